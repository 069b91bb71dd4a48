// The command line as users and scripts see it: real processes, real files, exit codes.
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LIVE_SOURCES } from '../../src/sources/spec.js';
import { buildProgram, envSwitches, FLAGS_WITHOUT_VARIABLE } from '../../src/cli/main.js';
import { freePort, killAll, spawnCoinstream } from '../helpers/process.js';
import { queryRows } from '../../src/sinks/duckdb/open.js';

const KRAKEN = 'data/kraken-btcusd-2019-07-01.coincap.jsonl';
const dir = mkdtempSync(join(tmpdir(), 'coinstream-cli-'));
afterEach(killAll);

export function coinstream(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', ['bin/coinstream.js', ...args], { env: { ...process.env, ...env }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('coinstream run', () => {
  it('--batches 3 prints exactly three Batch headers and exits 0', async () => {
    const r = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', '600', '--trigger', '300ms', '--batches', '3', '--sink', 'console', '--no-dashboard']);
    expect(r.stderr).not.toMatch(/"level":50/);
    expect(r.code).toBe(0);
    expect(r.stdout.match(/^Batch: \d+$/gm)).toEqual(['Batch: 0', 'Batch: 1', 'Batch: 2']);
    expect(r.stdout).toMatch(/\| bitcoin \| 2019-07-01 00:0/);
  });

  it('replays a file to the end, writes the store and query reads it back', async () => {
    const store = join(dir, 'kraken.duckdb');
    const r = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', `duckdb:${store}`, '--no-dashboard']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/done: 2672 trades aggregated/);
    const q = await coinstream(['query', '--store', `duckdb:${store}`, '--asset', 'bitcoin', '--last', '3m']);
    expect(q.code).toBe(0);
    const rows = q.stdout.split('\n').filter((l) => l.startsWith('| bitcoin'));
    expect(rows.map((l) => l.split('|')[2].trim())).toEqual(['2019-07-01 00:57:00.000', '2019-07-01 00:58:00.000', '2019-07-01 00:59:00.000']);
    expect(q.stdout).toMatch(/3 window\(s\)/);
    const none = await coinstream(['query', '--store', `duckdb:${store}`, '--asset', 'dogecoin']);
    expect(none.stdout.trim()).toBe(`no windows for asset "dogecoin" in ${store}; it holds bitcoin (--asset takes the asset\x27s CoinCap id, e.g. bitcoin)`);
  });

  it('starts the DuckDB worker before the command is parsed when run writes to DuckDB, and not otherwise', async () => {
    const store = join(dir, 'prestarted.duckdb');
    const withStore = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', `duckdb:${store}`, '--no-dashboard'], { COINSTREAM_LOG_LEVEL: 'debug' });
    expect(withStore.code).toBe(0);
    expect(withStore.stderr).toMatch(/taking over the worker started before the command was parsed/);
    expect(withStore.stderr).toMatch(/done: 2672 trades aggregated/);
    const [row] = await queryRows(store, 'SELECT count(*)::DOUBLE AS n FROM trades', { readOnly: true });
    expect(row.n).toBe(2672);
    // No DuckDB sink: the worker is not started (or not taken), and the run ends as usual.
    const consoleOnly = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', 'console', '--no-dashboard'], { COINSTREAM_LOG_LEVEL: 'debug' });
    expect(consoleOnly.code).toBe(0);
    expect(consoleOnly.stderr).not.toMatch(/taking over the worker/);
    // A bad flag: exit 2 with one line, every time. Ending the prestarted worker while DuckDB was still
    // loading aborted the process from native code now and then (exit 134, 4 runs in 30).
    for (let i = 0; i < 10; i++) {
      const bad = await coinstream(['run', '--no-such-flag']);
      expect(bad.stderr, `run ${i + 1}`).not.toMatch(/terminate called|Napi::Error/);
      expect(bad.code, `run ${i + 1}`).toBe(2);
    }
  });

  it('reads flags from COINSTREAM_ environment variables', async () => {
    const r = await coinstream(['run', '--no-dashboard', '--speed', 'max'], { COINSTREAM_SOURCE: `replay:${KRAKEN}`, COINSTREAM_SINK: 'console', COINSTREAM_WINDOW: '10m', COINSTREAM_TREND_SPAN: '30m' });
    expect(r.code).toBe(0);
    expect(r.stdout.match(/^\| bitcoin/gm)).toHaveLength(6);
  });
});

describe('shutdown', () => {
  it('SIGTERM writes the open windows (not final), closes the store and exits 0 within seconds', async () => {
    const store = join(dir, 'sigterm.duckdb');
    const run = spawnCoinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', '120', '--trigger', '200ms', '--sink', `duckdb:${store}`, '--no-dashboard'], { COINSTREAM_LOG_LEVEL: 'debug' });
    // Stop once three batches are in the store (about a minute of market time at 120x).
    await run.waitFor('stderr', /(?:batch written[\s\S]*?){3}/);
    const sentAt = Date.now();
    run.child.kill('SIGTERM');
    expect((await run.exit).code).toBe(0);
    expect(Date.now() - sentAt).toBeLessThan(5000);
    expect(run.stderr()).toMatch(/"reason":"aborted"/);
    const q = await coinstream(['query', '--store', `duckdb:${store}`, '--last', '1h']);
    const rows = q.stdout.split('\n').filter((l) => l.startsWith('| bitcoin'));
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBeLessThan(60); // stopped early
    expect(rows.at(-1)).not.toMatch(/\| yes +\|$/); // the newest window is still open
  });
});

describe('coinstream run with the live defaults', () => {
  it('reads binance and coinbase when no --source is given', () => {
    expect(DEFAULT_LIVE_SOURCES).toEqual(['binance:btcusdt,ethusdt', 'coinbase:BTC-USD,ETH-USD']);
  });

  it('says within 10 s when it cannot reach the feeds, keeps retrying, and stops cleanly', async () => {
    // The live feeds, pointed at a loopback port where nothing listens: refused whether or not this
    // machine has internet. The point is the message, not the data.
    const url = `ws://127.0.0.1:${await freePort()}`;
    const run = spawnCoinstream(['run', '--no-dashboard', '--sink', 'console', '--source', `binance@${url}`, '--source', `coinbase@${url}`]);
    const started = Date.now();
    const failed = (feed: string, attempt: number) => new RegExp(`"feed":"${feed}".*"attempt":${attempt},.*${feed}: (connection failed|handshake refused).*; reconnecting in \\d+\\.\\d s`);
    await Promise.all([run.waitFor('stderr', failed('binance', 1), 10_000), run.waitFor('stderr', failed('coinbase', 1), 10_000)]);
    expect(Date.now() - started).toBeLessThan(10_000);
    await Promise.all([run.waitFor('stderr', failed('binance', 2)), run.waitFor('stderr', failed('coinbase', 2))]); // keeps retrying
    run.child.kill('SIGINT');
    expect((await run.exit).code).toBe(0);
    expect(run.stderr()).toMatch(/binance: connection failed: .*; reconnecting in \d+\.\d s/);
    expect(run.stderr()).toMatch(/coinbase: connection failed: .*; reconnecting in \d+\.\d s/);
  });
});

describe('bad usage exits 2 with one line that says what to do', () => {
  it.each([
    [['run', '--frobnicate'], /unknown option '--frobnicate'.*--help/],
    [['run', '--source', `replay:${KRAKEN}`, '--window', '5x'], /--window: "5x" is not a duration; write it like/],
    [['run', '--source', `replay:${KRAKEN}`, '--window', '60'], /--window: "60" is not a duration/],
    [['run', '--source', 'replay:/no/such/file.jsonl'], /replay file not found: \/no\/such\/file.jsonl/],
    [['run', '--source', 'replay:/tmp'], /replay source is not a file: \/tmp is a directory/],
    [['run', '--source', 'replay:/dev/null'], /replay source is not a file: \/dev\/null is a pipe or device, and a replay resumes from a byte offset/],
    [['run', '--source', 'bogus:x'], /unknown source "bogus:x"; a source is one of/],
    [['run', '--source', `replay:${KRAKEN}`, '--sink', 'parquet:x'], /unknown sink "parquet:x"/],
    [['run', '--source', `replay:${KRAKEN}`, '--sink', `delta:${KRAKEN}`], /--sink delta:\S+: \S+ is a file; give a directory/],
    [['run', '--source', `replay:${KRAKEN}`, '--batches', '0'], /--batches "0" must be a whole number >= 1/],
    [['run', '--source', `replay:${KRAKEN}`, '--speed', 'fast'], /--speed "fast" must be "max" or a number > 0/],
    [['run', '--source', `replay:${KRAKEN}`, '--slide', '2m'], /--slide .* must not be longer than --window/],
    [['run', '--source', `replay:${KRAKEN}`, '--source', `replay:./${KRAKEN}`], /--source replay:\.\/data\/\S+ repeats --source replay:data\/\S+: its trades would be counted twice/],
    [['run', '--source', 'synthetic:5', '--source', 'synthetic:5'], /--source synthetic:5 repeats --source synthetic:5/],
    [['query', '--store', 'duckdb:/no/such.duckdb'], /no store at \/no\/such.duckdb/],
    [['query', '--store', 'duckdb:/no/such.duckdb', '--last', '0s'], /^coinstream: --last must be longer than 0, e.g. --last 6m$/],
    [['run', '--source', `replay:${KRAKEN}`, '--sink', 'duckdb:/no/such/dir/s.duckdb'], /^coinstream: duckdb:\/no\/such\/dir\/s.duckdb: the directory \/no\/such\/dir does not exist; make it first/],
    [['nonsense'], /unknown command 'nonsense'/],
    [['qurey'], /^coinstream: unknown command 'qurey' \(Did you mean query\?\)\. Run `coinstream --help`/],
    [['run', '--sorce', 'x'], /unknown option '--sorce' \(Did you mean --source\?\)/],
    [['help', 'bogus'], /^coinstream: no command "bogus"\. Run `coinstream --help` to see the commands\.$/],
    [['run', '--source', 'synthetic:1e9'], /--source synthetic:1e9: the rate must be trades per second, > 0 and at most 1,000,000/],
    [['process', '--brokers', '127.0.0.1:1', '--topic', '', '--sink', 'console'], /^coinstream: --topic "" is not a Kafka topic name/],
    [['process', '--brokers', '127.0.0.1:1', '--dead-letter-topic', 'coincap_trade', '--sink', 'console'], /^coinstream: --dead-letter-topic must differ from --topic \(coincap_trade\)/],
    [['topics', 'list', '--brokers', '127.0.0.1:1'], /^coinstream: command-argument value 'list' is invalid for argument 'action'\. Allowed choices are create, describe\. Run `coinstream topics --help` to see the options\.$/],
  ])('%j', async (args, message) => {
    const r = await coinstream(args as string[]);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
    expect(r.stdout).toBe('');
  });

  it('a bad COINSTREAM_DUCKDB_MEMORY is bad usage, said before any file is made', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coinstream-memory-'));
    const store = join(dir, 's.duckdb');
    const r = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', `duckdb:${store}`, '--no-dashboard'], { COINSTREAM_DUCKDB_MEMORY: 'lots' });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual(['coinstream: COINSTREAM_DUCKDB_MEMORY="lots" is not a size DuckDB takes: give a number and a unit, e.g. 256MB or 1GB (unset: 128MB)']);
    expect(existsSync(store)).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a store named twice, however spelled, exits 2 before either is made, and never shows a password', async () => {
    const file = join(dir, 'twice.duckdb');
    const duck = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--sink', `duckdb:${file}`, '--sink', `duckdb:${dir}/./twice.duckdb`, '--no-dashboard']);
    expect(duck.code).toBe(2);
    expect(duck.stderr.trim()).toBe(`coinstream: --sink duckdb:${dir}/./twice.duckdb repeats --sink duckdb:${file}: it would be written twice over; give each sink once`);
    expect(existsSync(file)).toBe(false);
    const sql = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--sink', 'mysql://root@127.0.0.1:1/test', '--sink', 'mysql://root:s3cret@127.0.0.1:1/test', '--no-dashboard']);
    expect(sql.code).toBe(2);
    expect(sql.stderr.trim()).toBe('coinstream: --sink mysql://root:***@127.0.0.1:1/test repeats --sink mysql://root@127.0.0.1:1/test: it would be written twice over; give each sink once');
    // Another user, localhost for 127.0.0.1, a symbolic link to the same directory: still one store each.
    const sqlAgain = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--sink', 'postgres://postgres@127.0.0.1:1/test', '--sink', 'postgres://root@localhost:1/test', '--no-dashboard']);
    expect(sqlAgain.code).toBe(2);
    expect(sqlAgain.stderr.trim()).toMatch(/^coinstream: --sink postgres:\/\/root@localhost:1\/test repeats --sink postgres:\/\/postgres@127\.0\.0\.1:1\/test/);
    const delta = join(dir, 'twice-delta');
    mkdirSync(delta);
    symlinkSync(delta, join(dir, 'twice-link'));
    const linked = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--sink', `delta:${delta}`, '--sink', `delta:${join(dir, 'twice-link')}`, '--no-dashboard']);
    expect(linked.code).toBe(2);
    expect(linked.stderr.trim()).toMatch(/repeats --sink delta:.*twice-delta: it would be written twice over/);
  });

  it('two specs joined by a comma are named as such, and no store is made under the joined name', async () => {
    const joinedSink = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', `duckdb:${dir}/j.duckdb,console`, '--no-dashboard']);
    expect(joinedSink.code).toBe(2);
    expect(joinedSink.stderr.trim()).toBe(
      `coinstream: --sink duckdb:${dir}/j.duckdb,console: no such store; it looks like several sinks in one: give each its own --sink (in COINSTREAM_SINK, separate them with spaces, not commas)`,
    );
    expect(existsSync(`${dir}/j.duckdb,console`)).toBe(false);
    const joinedSources = await coinstream(['run', '--sink', 'console', '--no-dashboard'], { COINSTREAM_SOURCE: `replay:${KRAKEN},replay:${KRAKEN}` });
    expect(joinedSources.code).toBe(2);
    expect(joinedSources.stderr.trim()).toMatch(/^coinstream: replay file not found: .*; it looks like several sources in one: give each its own --source \(in COINSTREAM_SOURCE, separate them with spaces, not commas\)$/);
    // A feed's own list is not two specs.
    const { joinedSpecsHint } = await import('../../src/core/joined-specs.js');
    expect(joinedSpecsHint('coincap:bitcoin,ethereum,binance-coin', 'source')).toBe('');
    expect(joinedSpecsHint('kraken:XBT/USD,ETH/USD', 'source')).toBe('');
    expect(joinedSpecsHint('duckdb:a.duckdb', 'sink')).toBe('');
  });

  it('a ~ at the start of a path in a spec is the home directory (the shell leaves it after "replay:")', async () => {
    const home = mkdtempSync(join(tmpdir(), 'coinstream-home-'));
    copyFileSync(KRAKEN, join(home, 'kraken.jsonl'));
    const run = await coinstream(['run', '--source', 'replay:~/kraken.jsonl', '--speed', 'max', '--sink', 'duckdb:~/store.duckdb', '--no-dashboard'], { HOME: home });
    expect(run.stderr).toMatch(/done: 2672 trades aggregated/);
    expect(run.code).toBe(0);
    expect(existsSync(join(home, 'store.duckdb'))).toBe(true);
    expect(existsSync('~')).toBe(false);
    const q = await coinstream(['query', '--store', 'duckdb:~/store.duckdb', '--asset', 'bitcoin', '--last', '1m'], { HOME: home });
    expect(q.code).toBe(0);
    expect(q.stdout).toMatch(/\| bitcoin \| 2019-07-01 00:59:00.000 \|/);
    // `--out=~/...` is one word: the shell leaves its ~ too.
    const rec = await coinstream(['record', '--source', 'replay:~/kraken.jsonl', '--out=~/rec.jsonl'], { HOME: home });
    expect(rec.code, rec.stderr).toBe(0);
    expect(readFileSync(join(home, 'rec.jsonl'), 'utf8').split('\n').filter(Boolean)).toHaveLength(2672);
  });

  it('--help explains and exits 0', async () => {
    const r = await coinstream(['run', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--source <spec>/);
    expect(r.stdout).toMatch(/--watermark <duration>/);
  });

  it('on/off variables read as meant: COINSTREAM_NO_DASHBOARD=0 leaves the dashboard on, =maybe is bad usage', async () => {
    const args = ['run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', 'console', '--port', '0'];
    const on = await coinstream(args, { COINSTREAM_NO_DASHBOARD: '0', COINSTREAM_LOG_FORMAT: 'json' });
    expect(on.code, on.stderr).toBe(0);
    expect(on.stderr).toMatch(/"msg":"dashboard on http:\/\/127\.0\.0\.1:\d+\/"/);
    const off = await coinstream(args, { COINSTREAM_NO_DASHBOARD: 'true', COINSTREAM_LOG_FORMAT: 'json' });
    expect(off.code, off.stderr).toBe(0);
    expect(off.stderr).not.toMatch(/dashboard on/);
    const bad = await coinstream(args, { COINSTREAM_NO_DASHBOARD: 'maybe' });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split('\n')).toEqual(['coinstream: COINSTREAM_NO_DASHBOARD="maybe" must be 1, true, yes or on to set it, or 0, false, no or off (or unset) to leave it']);
  });

  it('every flag reads its variable (but for the few that must not), and every on/off variable is read as meant', async () => {
    const program = buildProgram();
    const missing: string[] = [];
    for (const cmd of program.commands) {
      for (const option of cmd.options) {
        const flag = option.long ?? '';
        if (flag === '--help' || option.envVar) continue;
        if (!FLAGS_WITHOUT_VARIABLE.includes(flag) || (flag === '--retention' && cmd.name() !== 'optimize')) missing.push(`${cmd.name()} ${flag}`);
      }
    }
    // Before: --dry-run, --target-size, --available-now and --no-dead-letter read nothing.
    expect(missing).toEqual([]);
    const switches = envSwitches(program);
    expect(switches).toEqual(expect.arrayContaining(['COINSTREAM_SSL', 'COINSTREAM_DRY_RUN', 'COINSTREAM_AVAILABLE_NOW', 'COINSTREAM_NO_DEAD_LETTER', 'COINSTREAM_NO_DASHBOARD']));
    expect(switches).not.toContain('COINSTREAM_PORT');
    // COINSTREAM_SSL=0 was TLS on; =banana was accepted.
    const bad = await coinstream(['topics', 'describe', '--brokers', '127.0.0.1:1'], { COINSTREAM_SSL: 'banana' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/COINSTREAM_SSL="banana" must be 1, true, yes or on/);
  });

  it('a replay file reached through a symbolic or a hard link is the same file', async () => {
    const links = mkdtempSync(join(tmpdir(), 'coinstream-links-'));
    try {
      // A copy first, so that the hard link is on the same file system.
      const file = join(links, 'hour.jsonl');
      copyFileSync(KRAKEN, file);
      symlinkSync(file, join(links, 'soft.jsonl'));
      linkSync(file, join(links, 'hard.jsonl'));
      for (const name of ['soft.jsonl', 'hard.jsonl']) {
        const r = await coinstream(['run', '--source', `replay:${file}`, '--source', `replay:${join(links, name)}`, '--sink', 'console', '--no-dashboard']);
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr.trim().split('\n')).toEqual([`coinstream: --source replay:${join(links, name)} repeats --source replay:${file}: its trades would be counted twice; give each source once`]);
      }
    } finally {
      rmSync(links, { recursive: true, force: true });
    }
  });
});

describe('the entry point', () => {
  it('lets V8 drop its "no buffer is ever detached" assumption before it compiles anything (src/core/detach-early.ts)', async () => {
    // V8 prints both to stdout: the protector's end, and each function it has optimised. A run that
    // transfers batches to the DuckDB worker ends the assumption anyway; it must end before the first
    // function is optimised, or that code (and every function compiled after it) is thrown away.
    const store = join(dir, 'detach.duckdb');
    const out = await new Promise<string>((resolve, reject) => {
      execFile(
        'node',
        ['--trace-protector-invalidation', '--trace-opt', 'bin/coinstream.js', 'run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', `duckdb:${store}`, '--no-dashboard'],
        { maxBuffer: 64 << 20 },
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      );
    });
    const lines = out.split('\n');
    const ended = lines.filter((l) => l.includes('Invalidating protector cell ArrayBufferDetaching'));
    const firstOptimised = lines.findIndex((l) => l.startsWith('[completed optimizing'));
    expect(ended).toHaveLength(1); // the main thread's; the DuckDB worker detaches nothing
    expect(firstOptimised).toBeGreaterThan(-1);
    expect(lines.indexOf(ended[0])).toBeLessThan(firstOptimised);
  });
});
