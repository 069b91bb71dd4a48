// Issue 9, "hardening": one describe per numbered defect. Each test runs the real CLI on crafted input
// and pins the behaviour that fixed the defect; the comment above each describe says what went wrong.
import { execFile, spawn } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { queryRows, withDuckDB } from '../../src/sinks/duckdb/open.js';
import { killAll, spawnCoinstream } from '../helpers/process.js';

const KRAKEN = 'data/kraken-btcusd-2019-07-01.coincap.jsonl';
/** The 2,672 Kraken trades of 2019-07-01 00:00-01:00 UTC, one JSON text per element. */
const K = readFileSync(KRAKEN, 'utf8').split('\n').filter((l) => l !== '');
const FIRST_TS = JSON.parse(K[0]).timestamp as number;
const dir = mkdtempSync(join(tmpdir(), 'coinstream-hardening-'));
afterEach(killAll);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let seq = 0;
/** Writes `lines` (one per element, newline-terminated) to a fresh file in the temp dir. */
function file(name: string, lines: string[]): string {
  const path = join(dir, `${++seq}-${name}`);
  writeFileSync(path, lines.map((l) => l + '\n').join(''));
  return path;
}
const store = (name: string) => join(dir, `${++seq}-${name}.duckdb`);

function coinstream(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // A run that hangs is killed (and fails its test) rather than left spinning after the test.
    execFile('node', ['bin/coinstream.js', ...args], { env: { ...process.env, COINSTREAM_LOG_FORMAT: 'json', ...env }, maxBuffer: 64 << 20, timeout: 50_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Replays `source` as fast as possible into a fresh DuckDB store; returns the run and the store path. */
async function replayToStore(source: string, extra: string[] = []) {
  const s = store('replay');
  const r = await coinstream(['run', '--source', `replay:${source}`, '--speed', 'max', '--sink', `duckdb:${s}`, '--no-dashboard', ...extra]);
  return { ...r, store: s };
}

const count = async (path: string, sql: string) => Number((await queryRows(path, sql))[0].n);
const trades = (path: string) => count(path, 'SELECT count(*)::DOUBLE AS n FROM trades');
const rejected = (path: string) =>
  queryRows(path, 'SELECT reason, detail, raw FROM rejected_trades ORDER BY detail') as Promise<{ reason: string; detail: string; raw: string }[]>;

/** A failure: the exit code, exactly one line on stderr, no stack trace. Returns that line. */
function expectOneLineFailure(r: { code: number; stderr: string }, code: number | number[]): string {
  expect([code].flat()).toContain(r.code);
  const lines = r.stderr.trim().split('\n');
  expect(lines.filter((l) => l.startsWith('    at '))).toEqual([]);
  expect(lines).toHaveLength(1);
  return lines[0];
}

// 1. Deeply nested JSON overflowed the parser's stack and killed the run; a late trade's `raw` was a
//    re-serialisation (and failed on the nesting) instead of the text that came in.
describe('1. deep nesting', () => {
  it('a line of 5000 nested arrays is one malformed rejection; the run goes on', async () => {
    const r = await replayToStore(file('deep.jsonl', [...K, '['.repeat(5000) + ']'.repeat(5000)]));
    expect(r.code).toBe(0);
    expect(await trades(r.store)).toBe(2672);
    const rej = await rejected(r.store);
    expect(rej.map((x) => x.reason)).toEqual(['malformed']);
  });

  it('a late trade with a deeply nested extra field keeps its own text as raw', async () => {
    // Spaces after the colons: a re-serialisation would drop them, the input text keeps them.
    const late = K[0].replace(/:/g, ': ').replace(/"timestamp": \d+/, `"timestamp": ${FIRST_TS - 3_600_000}`).replace(/}$/, `, "x": ${'['.repeat(5000)}${']'.repeat(5000)}}`);
    const r = await replayToStore(file('deep-late.jsonl', [...K, late]));
    expect(r.code).toBe(0);
    expect(await trades(r.store)).toBe(2672);
    const rej = await rejected(r.store);
    expect(rej).toHaveLength(1);
    expect(rej[0].reason).toBe('late');
    expect(rej[0].detail.startsWith('line 2673: ')).toBe(true);
    expect(rej[0].raw.startsWith(late.slice(0, 4096))).toBe(true);
  });
});

// 2. Extreme numbers (1e308, the smallest subnormal) were accepted and turned window sums into
//    Infinity or lost their precision.
describe('2. extreme values', () => {
  it('priceUsd/volume of 1e308 and priceUsd of 5e-324 are invalid; the real trades are all stored', async () => {
    const huge = K[100].replace(/"volume":[^,]+/, '"volume":1e308').replace(/"priceUsd":[^}]+/, '"priceUsd":1e308');
    const tiny = K[200].replace(/"priceUsd":[^}]+/, '"priceUsd":5e-324');
    expect(huge).toContain('"priceUsd":1e308');
    expect(tiny).toContain('"priceUsd":5e-324');
    const r = await replayToStore(file('extreme.jsonl', [...K.slice(0, 101), huge, ...K.slice(101, 201), tiny, ...K.slice(201)]));
    expect(r.code).toBe(0);
    expect(await trades(r.store)).toBe(2672);
    const rej = await rejected(r.store);
    expect(rej.map((x) => x.reason)).toEqual(['invalid', 'invalid']);
    expect(rej.some((x) => /priceUsd 1e\+308 is outside|volume 1e\+308 is outside/.test(x.detail))).toBe(true);
    expect(rej.some((x) => /priceUsd 5e-324 is outside/.test(x.detail))).toBe(true);
  });
});

// 3. The reader parsed a stream of JSON values, not lines: two trades on one line were both taken,
//    and a value split over two lines was glued back together.
describe('3. one verdict per line', () => {
  it('two trades on one line, and one value split over two lines, are each malformed', async () => {
    const r = await replayToStore(file('crafted.jsonl', [`${K[0]},${K[1]}`, '{"x":[1', '2]}', ...K.slice(2, 8)]));
    expect(r.code).toBe(0);
    expect(await trades(r.store)).toBe(6);
    const rej = await rejected(r.store);
    expect(rej.map((x) => x.reason)).toEqual(['malformed', 'malformed', 'malformed']);
    expect(rej.map((x) => x.detail.slice(0, 8))).toEqual(['line 1: ', 'line 2: ', 'line 3: ']);
  });

  it('a trade split inside a string over two lines is two malformed lines, not a trade', async () => {
    const cut = '{"exchange":"kraken'.length;
    expect(K[0].slice(0, cut)).toBe('{"exchange":"kraken');
    const r = await replayToStore(file('split.jsonl', [K[0].slice(0, cut), K[0].slice(cut), ...K.slice(1, 8)]));
    expect(r.code).toBe(0);
    expect(await trades(r.store)).toBe(7);
    const rej = await rejected(r.store);
    expect(rej.map((x) => x.reason)).toEqual(['malformed', 'malformed']);
    expect(rej.map((x) => x.detail.slice(0, 8))).toEqual(['line 1: ', 'line 2: ']);
  });
});

// 4. A truncated .gz failed the whole run (or hung); now the lines before the damage count and the
//    run says which file is damaged and where.
describe('4. damaged gzip', () => {
  it('a .gz cut at 60% is read up to the damage, with a warning and a note in the summary', async () => {
    const gz = gzipSync(readFileSync(KRAKEN));
    const path = join(dir, `${++seq}-cut.jsonl.gz`);
    writeFileSync(path, gz.subarray(0, Math.floor(gz.length * 0.6)));
    const r = await replayToStore(path);
    expect(r.code).toBe(0);
    const warn = r.stderr.split('\n').find((l) => /"level":40/.test(l) && l.includes(path));
    expect(warn).toMatch(/damaged at compressed byte \d+/);
    const n = await trades(r.store);
    expect(n).toBeGreaterThanOrEqual(1000);
    expect(n).toBeLessThan(2672);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/done: .*1 damaged source/);
  });

  it('a .gz holding only the 10-byte header: 0 trades, the damaged warning, exit 0', async () => {
    const path = join(dir, `${++seq}-header.jsonl.gz`);
    writeFileSync(path, gzipSync(readFileSync(KRAKEN)).subarray(0, 10));
    const r = await replayToStore(path);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/damaged at compressed byte \d+/);
    expect(await trades(r.store)).toBe(0);
  });
});

// 5. A huge line was buffered whole (unbounded memory); now a line over --max-line is one malformed
//    rejection keeping only its start, and a bad --max-line is a usage error.
describe('5. a line over the limit', () => {
  it('--max-line 1KiB: a 5000-byte line is rejected as malformed, the rest is stored', async () => {
    const prefix = '{"exchange":"kraken","note":"';
    const long = prefix + 'a'.repeat(5000 - prefix.length - 2) + '"}';
    expect(Buffer.byteLength(long)).toBe(5000);
    const r = await replayToStore(file('long.jsonl', [...K.slice(0, 1000), long, ...K.slice(1000)]), ['--max-line', '1KiB']);
    expect(r.code).toBe(0);
    expect(await trades(r.store)).toBe(2672);
    const rej = await rejected(r.store);
    expect(rej.map((x) => x.reason)).toEqual(['malformed']);
    expect(rej[0].detail).toMatch(/longer than the limit of 1024 bytes \(5\d\d\d bytes/);
    expect(rej[0].raw.startsWith(long.slice(0, 100))).toBe(true);
  });

  it('--max-line abc is a usage error', async () => {
    const r = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--max-line', 'abc', '--no-dashboard']);
    expect(expectOneLineFailure(r, 2)).toMatch(/--max-line "abc" is not a size/);
  });
});

// 6. A closed stdout (`| head`) crashed with an EPIPE stack; now query exits 0 quietly and run stops
//    the console but keeps writing the stores.
describe('6. output pipes', () => {
  it('query with stdout closed after the first chunk exits 0 without an error', async () => {
    const r = await replayToStore(KRAKEN);
    expect(await count(r.store, 'SELECT count(*)::DOUBLE AS n FROM trade_windows')).toBe(60);
    const q = spawnCoinstream(['query', '--store', `duckdb:${r.store}`, '--last', '2h']);
    q.child.stdout!.once('data', () => q.child.stdout!.destroy());
    const { code } = await q.exit;
    expect(q.stderr()).not.toMatch(/EPIPE|Error/);
    expect(code).toBe(0);
  });

  it('query printing more than a pipe buffer (64 KiB), stdout closed after the first chunk: exit 0, no error', async () => {
    // 1 s windows: about 170 KB of output, so the query must write into the closed pipe.
    const r = await replayToStore(KRAKEN, ['--window', '1s', '--trend-span', '10s']);
    const q = spawnCoinstream(['query', '--store', `duckdb:${r.store}`, '--last', '2h']);
    q.child.stdout!.once('data', () => q.child.stdout!.destroy());
    const { code } = await q.exit;
    expect(q.stderr()).not.toMatch(/EPIPE|Error/);
    expect(code).toBe(0);
  });

  it('run with stdout closed: the console stops, the store gets every trade', async () => {
    const s = store('pipe');
    const run = spawnCoinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', '1200', '--trigger', '100ms', '--sink', 'console', '--sink', `duckdb:${s}`, '--no-dashboard']);
    run.child.stdout!.once('data', () => run.child.stdout!.destroy());
    const { code } = await run.exit;
    expect(code).toBe(0);
    expect(run.stderr()).toMatch(/console output stopped \(the reader closed it\); the stores go on/);
    expect(await trades(s)).toBe(2672);
  });

  it('run --sink console alone, stdout closed: the run stops there (it replayed to the end with nothing to show it)', async () => {
    // Paced at 60x, the hour would take a minute; the reader goes away at the first batch.
    const run = spawnCoinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', '60', '--trigger', '100ms', '--sink', 'console', '--no-dashboard']);
    run.child.stdout!.once('data', () => run.child.stdout!.destroy());
    const { code } = await run.exit;
    expect(code).toBe(0);
    expect(run.stderr()).toMatch(/console output stopped \(the reader closed it\); it was the run's only output, so the run stops/);
    const done = JSON.parse(run.stderr().trim().split('\n').at(-1)!) as { reason: string; accepted: number };
    expect(done.reason).toBe('aborted');
    expect(done.accepted).toBeLessThan(2672);
  });
});

describe('6a. stdout that fails (a full disk, `> /dev/full`)', () => {
  const toDevFull = (args: string[]) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const out = openSync('/dev/full', 'w');
      const child = spawn('node', ['bin/coinstream.js', ...args], { stdio: ['ignore', out, 'pipe'], env: { ...process.env, COINSTREAM_LOG_FORMAT: 'json' } });
      closeSync(out);
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += String(d)));
      child.on('close', (code) => resolve({ code, stderr }));
    });

  it('query exits 1, saying its output is incomplete (it exited 0)', async () => {
    const r = await replayToStore(KRAKEN);
    const q = await toDevFull(['query', '--store', `duckdb:${r.store}`, '--last', '2h']);
    expect(q.code).toBe(1);
    expect(q.stderr.trim().split('\n').at(-1)).toBe('coinstream: failed: could not write to stdout (ENOSPC): what it printed is incomplete [OUTPUT_FAILED]');
  });

  it('run with a store: the store gets every trade, the console warns, and the exit is 1', async () => {
    const s = store('dev-full');
    const run = await toDevFull(['run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', 'console', '--sink', `duckdb:${s}`, '--no-dashboard']);
    expect(run.code, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/"level":40,.*console output stopped \(ENOSPC[^)]*\); the stores go on/);
    expect(await trades(s)).toBe(2672);
  });
});

describe('6c. a Delta store where no directory can be made', () => {
  it('under /proc: exit 1 at once, naming the table and the directory (Node\'s recursive mkdir never returned there)', async () => {
    const r = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', 'delta:/proc/coinstream-no-such', '--no-dashboard']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^coinstream: failed: Delta table \/proc\/coinstream-no-such\/\w+: cannot make the directory \/proc\/coinstream-no-such: ENOENT: .* \[SINK_FAILED\]$/);
  });
});

describe('6d. Ctrl-C while the command is still starting', () => {
  it('is a graceful stop (exit 0, the stopping line), not a kill by SIGINT (exit 130, no line)', async () => {
    // The run sends itself SIGINT right after bin/coinstream.js caught it, long before its own handler.
    const s = store('signal-at-start');
    const r = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', `duckdb:${s}`, '--no-dashboard'], { COINSTREAM_TEST_FAULT: 'signal-at-start' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/"msg":"stopping: writing the current windows, then closing the stores \(send again to exit at once\)"/);
    expect(JSON.parse(r.stderr.trim().split('\n').at(-1)!)).toMatchObject({ reason: 'aborted' });
  });
});

describe('6b. rejections with no store', () => {
  it('the console prints them (escaped), and nothing claims they are kept in rejected_trades', async () => {
    const input = file('console-rejects.jsonl', [K[0], 'not json', JSON.stringify({ ...JSON.parse(K[1]), quote: 7 }).replace('"quote":7', '"quote":"usd\\u001b[31m"'), K[2]]);
    const r = await coinstream(['run', '--source', `replay:${input}`, '--speed', 'max', '--sink', 'console', '--no-dashboard']);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.split('\n');
    const at = out.findIndex((l) => l.startsWith('rejected: 2 (malformed 1, invalid 1)'));
    expect(out[at]).toBe('rejected: 2 (malformed 1, invalid 1); no store keeps them (add --sink duckdb:PATH to keep them):');
    expect(out[at + 1]).toBe(`  malformed: replay:${input}: line 2: not JSON: Unexpected token 'o', "not json" is not valid JSON`);
    expect(out[at + 2]).toBe(`  invalid: replay:${input}: line 3: quote contains the control character U+001B, got "usd\\u001b[31m"`);
    expect(r.stdout).not.toContain('\u001b');
    expect(JSON.parse(r.stderr.trim().split('\n').at(-1)!).msg).toBe('done: 2 trades aggregated in 1 batches; 2 rejected (no store keeps them)');
  });
});

// 7. Paths were split on spaces; now a --source/--sink argument is one path, and only the
//    COINSTREAM_SOURCE variable separates specs by spaces.
describe('7. paths with spaces', () => {
  it('replays from and writes to paths with spaces', async () => {
    mkdirSync(join(dir, 'my data'), { recursive: true });
    mkdirSync(join(dir, 'my store'), { recursive: true });
    const src = join(dir, 'my data', 'k.jsonl');
    const s = join(dir, 'my store', 's.duckdb');
    copyFileSync(KRAKEN, src);
    const r = await coinstream(['run', '--source', `replay:${src}`, '--speed', 'max', '--sink', `duckdb:${s}`, '--no-dashboard']);
    expect(r.code).toBe(0);
    expect(await trades(s)).toBe(2672);
  });

  it('COINSTREAM_SOURCE="replay:A replay:B" is still two sources', async () => {
    const a = file('btc.jsonl', K);
    const b = file('eth.jsonl', K.map((l) => l.replace('"base":"bitcoin"', '"base":"ethereum"')));
    const s = store('env');
    // The watermark is shared by all assets and the two files are read concurrently: a 2 h watermark
    // keeps whichever file is behind from being late, so every trade of both must be stored.
    const r = await coinstream(['run', '--speed', 'max', '--watermark', '2h', '--sink', `duckdb:${s}`, '--no-dashboard'], { COINSTREAM_SOURCE: `replay:${a} replay:${b}` });
    expect(r.code).toBe(0);
    const byAsset = await queryRows(s, 'SELECT base, count(*)::DOUBLE AS n FROM trades GROUP BY base ORDER BY base');
    expect(byAsset).toEqual([{ base: 'bitcoin', n: 2672 }, { base: 'ethereum', n: 2672 }]);
  });
});

// 8. Timestamps in seconds (1970) or far in the future were accepted; a future one moved the
//    watermark so far that every real trade after it was late.
describe('8. implausible timestamps', () => {
  it('timestamps in seconds are all invalid, with a hint', async () => {
    const seconds = K.map((l) => l.replace(/"timestamp":(\d+)/, (_, ms) => `"timestamp":${Math.floor(Number(ms) / 1000)}`));
    const r = await replayToStore(file('seconds.jsonl', seconds));
    expect(r.code).toBe(0);
    expect(await trades(r.store)).toBe(0);
    expect(await count(r.store, "SELECT count(*)::DOUBLE AS n FROM rejected_trades WHERE reason = 'invalid'")).toBe(2672);
    expect(await count(r.store, "SELECT count(*)::DOUBLE AS n FROM rejected_trades WHERE detail LIKE '%seconds, not milliseconds?%'")).toBe(2672);
  });

  it('one trade in the year 274,500 is invalid and does not make the real ones late', async () => {
    const future = K[0].replace(/"timestamp":\d+/, '"timestamp":8600000000000000');
    const r = await replayToStore(file('future.jsonl', [future, ...K]));
    expect(r.code).toBe(0);
    expect(await trades(r.store)).toBe(2672);
    const rej = await rejected(r.store);
    expect(rej.map((x) => x.reason)).toEqual(['invalid']);
    expect(rej[0].detail).toMatch(/more than a day after/);
  });
});

// 9. Smaller defects: usage, signals, bad settings, unreadable and foreign files, the summary count.
describe('9. smaller ones', () => {
  it('query: an empty --asset is bad usage; a store of rejections only says so', async () => {
    const empty = await coinstream(['query', '--store', `duckdb:${join(dir, 'none.duckdb')}`, '--asset', '']);
    expect(empty.code).toBe(2);
    expect(empty.stderr.trim()).toBe('coinstream: --asset is empty; give an asset id (--asset bitcoin), or leave the flag out for every asset');
    const r = await replayToStore(file('only-bad.jsonl', ['not json', '{"exchange":"kraken"}', 'nope']));
    const q = await coinstream(['query', '--store', `duckdb:${r.store}`]);
    expect(q.code).toBe(0);
    expect(q.stdout).toBe(`no windows in ${r.store}; it holds rejected trades only: invalid 1, malformed 2\n`);
  });

  it('--delta-trades with no delta sink, and --host 127.0.0.2 (loopback): a warning for the first only', async () => {
    const r = await coinstream(['run', '--source', `replay:${file('one.jsonl', [K[0]])}`, '--speed', 'max', '--sink', 'console', '--delta-trades', '--host', '127.0.0.2', '--port', '0'], { COINSTREAM_LOG_LEVEL: 'warn' });
    expect(r.code, r.stderr).toBe(0);
    const warnings = r.stderr.trim().split('\n').map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(warnings).toEqual(['--delta-trades does nothing here: it archives the trades in DIR/trades of a --sink delta:DIR, and no sink is one']);
  });

  it('no arguments: usage on stderr, exit 2, nothing on stdout', async () => {
    const r = await coinstream([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Usage: coinstream');
    expect(r.stderr).toContain('run');
    expect(r.stdout).toBe('');
  });

  it('SIGHUP stops gracefully and writes the open windows as not final', async () => {
    const s = store('sighup');
    const run = spawnCoinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', '120', '--trigger', '200ms', '--sink', `duckdb:${s}`, '--no-dashboard'], { COINSTREAM_LOG_LEVEL: 'debug' });
    await run.waitFor('stderr', /(?:batch written[\s\S]*?){2}/);
    run.child.kill('SIGHUP');
    expect((await run.exit).code).toBe(0);
    expect(run.stderr()).toMatch(/"signal":"SIGHUP"/);
    expect(await count(s, 'SELECT count(*)::DOUBLE AS n FROM trade_windows')).toBeGreaterThan(0);
    expect(await count(s, 'SELECT count(*)::DOUBLE AS n FROM trade_windows WHERE NOT is_final')).toBeGreaterThanOrEqual(1);
  });

  it('a second SIGINT exits at once, never by a native abort (5 times: it was intermittent)', async () => {
    for (let i = 0; i < 5; i++) {
      const run = spawnCoinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', '60', '--sink', `duckdb:${store('sigint')}`, '--no-dashboard']);
      await run.waitFor('stderr', /pipeline started/);
      run.child.kill('SIGINT');
      run.child.kill('SIGINT');
      const exit = await run.exit;
      expect(exit.code).not.toBe(134);
      expect(exit.signal === 'SIGINT' || exit.code === 0, `run ${i}: ${JSON.stringify(exit)}\n${run.stderr()}`).toBe(true);
      expect(run.stderr()).not.toMatch(/terminate called|Napi::Error/);
    }
  });

  it('an unknown COINSTREAM_LOG_LEVEL is a usage error', async () => {
    const r = await coinstream(['run', '--source', `replay:${KRAKEN}`], { COINSTREAM_LOG_LEVEL: 'loud' });
    expect(expectOneLineFailure(r, 2)).toMatch(/COINSTREAM_LOG_LEVEL "loud" is not a log level/);
  });

  it('query --last with an absurd duration is a usage error', async () => {
    const { store: s } = await replayToStore(KRAKEN);
    const r = await coinstream(['query', '--store', `duckdb:${s}`, '--last', '99999999999999999999h']);
    expect(expectOneLineFailure(r, 2)).toMatch(/is longer than 100000 days/);
  });

  it('replay-server on a port in use: exit 1, one line', async () => {
    const server = createServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as { port: number };
      const r = await coinstream(['replay-server', KRAKEN, '--port', String(port)]);
      expect(expectOneLineFailure(r, 1)).toMatch(/port \d+ is already in use/);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('replay-server on a directory: exit 2, one line', async () => {
    const r = await coinstream(['replay-server', dir]);
    expect(expectOneLineFailure(r, 2)).toMatch(/is not a file/);
  });

  it('process and topics with no Kafka at --brokers: exit 1, one line naming the brokers and the socket error', async () => {
    for (const args of [['process', '--brokers', '127.0.0.1:1', '--sink', 'console', '--no-dashboard'], ['topics', 'create', '--brokers', '127.0.0.1:1']]) {
      const r = await coinstream(args);
      expect(expectOneLineFailure(r, 1), args[0]).toMatch(/cannot reach Kafka at 127\.0\.0\.1:1: .*ECONNREFUSED/);
    }
  });

  it('record --out into a missing directory: exit 2, one line', async () => {
    const r = await coinstream(['record', '--out', '/nonexistent/dir/x.jsonl', '--source', 'coincap@ws://127.0.0.1:1']);
    expect(expectOneLineFailure(r, 2)).toMatch(/the directory .* does not exist/);
  });

  // The run logs "pipeline started" (info) before the source fails; at level warn only the failure shows.
  it('an unreadable replay file: exit 1, one line', async () => {
    // Root reads any regular file; /proc/self/mem fails to read (EIO) and stands in for one.
    const r = await coinstream(['run', '--source', 'replay:/proc/self/mem', '--speed', 'max', '--sink', 'console', '--no-dashboard'], { COINSTREAM_LOG_LEVEL: 'warn' });
    expect(expectOneLineFailure(r, 1).startsWith('coinstream: failed: cannot read /proc/self/mem')).toBe(true);
  });

  it('a foreign DuckDB file is refused and left untouched', async () => {
    const s = store('foreign');
    await withDuckDB(s, (conn) => conn.run('CREATE TABLE trade_windows (a INTEGER)'));
    const r = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', `duckdb:${s}`, '--no-dashboard'], { COINSTREAM_LOG_LEVEL: 'warn' });
    expect(expectOneLineFailure(r, 2)).toMatch(/is not a coinstream store: its table trade_windows has the columns \(a INTEGER\)/);
    const columns = await queryRows(s, 'DESCRIBE trade_windows');
    expect(columns.map((c) => `${c.column_name} ${c.column_type}`)).toEqual(['a INTEGER']);
  });

  it('a text file or a directory given as the store: exit 2, one line, the file untouched (a .jsonl was silently opened as an in-memory database)', async () => {
    const text = file('not-a-store.duckdb', ['hello, I am text']);
    const trades = file('trades.jsonl', K.slice(0, 3));
    const folder = join(dir, 'a-folder');
    mkdirSync(folder);
    for (const [path, why] of [[text, 'it does not start like one'], [trades, 'it does not start like one'], [folder, 'a directory, not a file']]) {
      const before = statSync(path).isFile() ? readFileSync(path) : null;
      const r = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', `duckdb:${path}`, '--no-dashboard'], { COINSTREAM_LOG_LEVEL: 'warn' });
      expect(expectOneLineFailure(r, 2)).toBe(`coinstream: ${path} is not a DuckDB store (${why}); coinstream writes nothing into it: give --sink duckdb: a new file or a store it wrote`);
      if (before) expect(readFileSync(path).equals(before)).toBe(true);
      const q = await coinstream(['query', '--store', `duckdb:${path}`]);
      expect(expectOneLineFailure(q, 2)).toBe(`coinstream: ${path} is not a DuckDB store (${why}); point --store at the file \`coinstream run --sink duckdb:PATH\` wrote`);
    }
  });

  it('a run that fails before it opens its store (a taken --port) exits with one line and leaves the new store whole', async () => {
    // The DuckDB worker starts opening the store while the command goes on; the failure must wait for it.
    const server = createServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as { port: number };
      const s = store('early-open');
      const r = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', `duckdb:${s}`, '--port', String(port)], { COINSTREAM_LOG_LEVEL: 'warn' });
      expect(expectOneLineFailure(r, 1)).toMatch(/port \d+ on 127\.0\.0\.1 is in use/);
      // Created, schema and all, and closed: a later run or query opens it.
      expect(await count(s, 'SELECT count(*)::DOUBLE AS n FROM trade_windows')).toBe(0);
      expect(await trades(s)).toBe(0);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('--batches 2: the summary count equals the trades in the store', async () => {
    const s = store('batches');
    const r = await coinstream(['run', '--source', `replay:${KRAKEN}`, '--batches', '2', '--trigger', '100ms', '--speed', '1200', '--sink', `duckdb:${s}`, '--no-dashboard']);
    expect(r.code).toBe(0);
    const done = /done: (\d+) trades aggregated/.exec(r.stderr.trim().split('\n').at(-1)!);
    expect(done).not.toBeNull();
    expect(Number(done![1])).toBeGreaterThan(0);
    expect(Number(done![1])).toBe(await trades(s));
  });

  it('--batches N on a resumed job writes N more batches (it counted the stored ones: no batch was ever cut)', async () => {
    const s = store('batches-resumed');
    // Batches are cut by a 100 ms trigger while the hour replays in 6 s: five batches never reach its end.
    const args = ['run', '--source', `replay:${KRAKEN}`, '--trigger', '100ms', '--speed', '600', '--sink', `duckdb:${s}`, '--no-dashboard', '--batches'];
    const first = await coinstream([...args, '3']);
    const second = await coinstream([...args, '2']);
    const logs = `first run:\n${first.stderr}\nsecond run:\n${second.stderr}`;
    expect([first.code, second.code], logs).toEqual([0, 0]);
    const summaries = [first, second].map((r) => JSON.parse(r.stderr.trim().split('\n').at(-1)!) as { reason: string; batches: number; accepted: number });
    expect(summaries.map((d) => [d.reason, d.batches]), logs).toEqual([['max-batches', 3], ['max-batches', 2]]);
    expect(second.stderr, logs).toMatch(/resuming job \\"run\\" after batch 2/);
    expect(await count(s, "SELECT max(batch_id)::DOUBLE AS n FROM stream_progress WHERE job = 'run'"), logs).toBe(4);
    expect(summaries[1].accepted, logs).toBeGreaterThan(0);
    expect(await trades(s), logs).toBe(summaries[0].accepted + summaries[1].accepted);
  });

  it('a process that something still holds after the command ended says so and exits with the command\'s code', async () => {
    // The stray handle is injected (kafkajs rejoining a group after a broker outage was the real one).
    const r = await coinstream(['query', '--store', `duckdb:${join(dir, 'no-such.duckdb')}`], { COINSTREAM_TEST_FAULT: 'linger-after-command:0' });
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toMatch(/^coinstream: no store at /);
    expect(lines.at(-1)).toBe('coinstream: still running 5 s after the command ended (held by a timer); exiting now. This is a bug: please report it with the log.');
  });
});
