// Recovery (DESIGN.md, "Recovery: exactly-once results"): `coinstream run` keeps its progress in the store
// (stream_progress, written in each batch's transaction) and the same command on the same store resumes.
//   1. The Kraken hour cut in two files in the middle of a minute: a run over half1 stopped by SIGINT,
//      then a run over half1 + half2, equals one uninterrupted run over the hour (and the SQL oracle).
//   2. The same cut served by a local websocket (replay-server), the run stopped and restarted against a
//      second server: the windows hold every trade, and the gap is logged.
//   3. Several replay files are one stream merged by event time: 2 and 10 files, consecutive or
//      interleaved, equal the SQL oracle on the single file in merge order, with nothing rejected.
//   4. Different result-changing settings on a stored job are refused (exit 2, one line); --trigger is
//      not one; --fresh clears the job and starts over.
//   5. A replay file that changed after a finished run: grown, the same command goes on with the new
//      lines, the windows written final staying so (trades in them are late); a last line still being
//      written is left for the next run; truncated, edited or replaced in place (its first line
//      changed), it is refused (exit 2, one line) and the store is left as it was.
// No fixed sleeps: every wait is for a log line, an exit or a port.
import { execFile } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows, withDuckDB } from '../../src/sinks/duckdb/open.js';
import { killAll, spawnCoinstream, tradesWritten } from '../helpers/process.js';
import { DEFAULT_ORACLE, oracleDiffs, runOracle, type OracleOptions } from '../oracle/oracle.js';
import { KRAKEN_FILE, krakenRows } from '../oracle/inputs.js';

const dir = mkdtempSync(join(tmpdir(), 'coinstream-resume-'));
afterAll(killAll);

// The hour has 2672 lines, in event-time order. The minute starting at 00:14:00 (epoch minute 26032334)
// holds lines 1211..1390 (180 trades); cutting after line 1336 leaves 126 of them in half1, 54 in half2.
const LINES = krakenRows().map((r) => JSON.stringify(r));
const CUT = 1336;
const SPAN_START = 26032334 * 60_000;
const HALF1 = join(dir, 'half1.jsonl');
const HALF2 = join(dir, 'half2.jsonl');
const WHOLE = join(dir, 'whole.duckdb'); // one uninterrupted replay of the hour

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', ['bin/coinstream.js', ...args], { maxBuffer: 64 << 20, env: { ...process.env, COINSTREAM_LOG_FORMAT: 'json', ...env } }, (err, _stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stderr }),
    );
  });
}


/** The `msg` of every JSON log line (the raw lines escape the quotes), one a line. */
function messages(stderr: string): string {
  return stderr
    .split('\n')
    .map((l) => {
      try {
        return (JSON.parse(l) as { msg?: string }).msg ?? '';
      } catch {
        return l; // not a JSON log line
      }
    })
    .join('\n');
}

const rows = (path: string, sql: string) => queryRows(path, sql, { readOnly: true });

/** Everything a store holds for the results, but updated_at (and received_at: the wall-clock arrival time). */
async function contents(path: string) {
  return {
    windows: await rows(path, `SELECT * EXCLUDE (updated_at) FROM trade_windows ORDER BY asset, window_start`),
    trends: await rows(path, `SELECT * FROM price_trends ORDER BY asset, window_start`),
    trades: await rows(path, `SELECT * EXCLUDE (received_at) FROM trades ORDER BY timestamp, base, price, volume, direction`),
    rejected: await rows(path, `SELECT reason, count(*)::DOUBLE AS n FROM rejected_trades GROUP BY reason ORDER BY reason`),
  };
}

/** One window of the bitcoin stream (by its start, ms). */
async function windowAt(path: string, startMs: number) {
  const [w] = await rows(path, `SELECT trades::DOUBLE AS trades, total_volume, vwap, is_final FROM trade_windows WHERE asset = 'bitcoin' AND epoch_ms(window_start) = ${startMs}`);
  return w;
}

/** The store equals the SQL oracle run on `file` (as in test/oracle/oracle.test.ts): every row and column, counts, 0 late. */
async function expectOracle(store: string, file: string, o: OracleOptions = DEFAULT_ORACLE): Promise<number> {
  return withDuckDB(store, async (conn) => {
    await runOracle(conn, file, o);
    const q = async (sql: string) => (await conn.runAndReadAll(sql)).getRowObjectsJS();
    const diffs = await oracleDiffs(conn);
    expect(diffs.windows, 'trade_windows differs from the oracle').toEqual([]);
    expect(diffs.trends, 'price_trends differs from the oracle').toEqual([]);

    const [counts] = await q(`SELECT (SELECT count(*) FROM trade_windows)::DOUBLE AS windows, (SELECT count(*) FROM oracle_windows)::DOUBLE AS expected,
      (SELECT count(*) FROM price_trends)::DOUBLE AS trends, (SELECT count(*) FROM oracle_trends)::DOUBLE AS expected_trends,
      (SELECT count(*) FROM trade_windows WHERE NOT is_final)::DOUBLE AS not_final, (SELECT count(*) FROM price_trends WHERE NOT is_final)::DOUBLE AS trends_not_final,
      (SELECT count(*) FROM oracle_lines WHERE verdict = 'late')::DOUBLE AS oracle_late`);
    expect(counts.windows).toBeGreaterThan(0);
    expect(counts).toEqual({ ...counts, expected: counts.windows, expected_trends: counts.trends, not_final: 0, trends_not_final: 0, oracle_late: 0 });

    const rejected = await q(`
      SELECT reason, count(*)::DOUBLE AS n FROM rejected_trades GROUP BY reason
      UNION ALL SELECT 'accepted', count(*)::DOUBLE FROM trades ORDER BY reason`);
    const expected = await q(`SELECT verdict AS reason, count(*)::DOUBLE AS n FROM oracle_lines WHERE verdict <> 'blank' GROUP BY verdict ORDER BY reason`);
    expect(rejected).toEqual(expected);
    return counts.windows as number;
  });
}

beforeAll(async () => {
  writeFileSync(HALF1, LINES.slice(0, CUT).join('\n') + '\n');
  writeFileSync(HALF2, LINES.slice(CUT).join('\n') + '\n');
  const r = await run(['run', '--source', `replay:${KRAKEN_FILE}`, '--speed', 'max', '--sink', `duckdb:${WHOLE}`, '--no-dashboard']);
  expect(r.code, r.stderr).toBe(0);
  // The spanning window: 180 trades in the uninterrupted run, 126 of them in half1.
  expect(await windowAt(WHOLE, SPAN_START)).toMatchObject({ trades: 180, is_final: true });
});

describe('1. a file cut in two, replayed by a run stopped with SIGINT and resumed with both files', () => {
  it('equals one uninterrupted run over the hour, and the SQL oracle; the spanning window holds the trades of both runs', async () => {
    const store = join(dir, 'split-replay.duckdb');
    // Half1 paced (about 29 s for its 879 s of trades), stopped by SIGINT once the committed batches reach
    // into the spanning window (line 1211 on), before the file's end (line 1336, ~32 s of market time later:
    // ~1.1 s at this pace). The run sends the signal to itself after the batch that passes 1215 trades
    // (COINSTREAM_TEST_FAULT, src/sinks/fault.ts): sent from here once the log line was read, it landed at
    // lines 1229 to 1307, and past the end twice on a loaded machine (CI, 2026-11-26; 4 bug hunts running).
    const first = spawnCoinstream(
      ['run', '--source', `replay:${HALF1}`, '--speed', '30', '--trigger', '100ms', '--sink', `duckdb:${store}`, '--no-dashboard'],
      { COINSTREAM_LOG_LEVEL: 'debug', COINSTREAM_TEST_FAULT: 'interrupt-after-trades:1216' },
    );
    expect((await first.exit).code, first.stderr()).toBe(0);
    expect(tradesWritten(first.stderr())).toBeGreaterThan(1215);
    expect(messages(first.stderr())).toMatch(/stopping: writing the current windows/);

    // The first run stopped inside the spanning window: its progress is not finished, and it holds part of that window.
    const progress = await rows(store, `SELECT source, position, finished FROM stream_progress WHERE job = 'run' ORDER BY source`);
    expect(progress.map((p) => p.source)).toEqual(['*', `replay:${HALF1}`]);
    expect(progress.every((p) => p.finished === false), JSON.stringify(progress)).toBe(true);
    const stoppedAt = (JSON.parse(progress[1].position as string) as { line: number }).line;
    console.log(`first run stopped after line ${stoppedAt} of ${CUT}`);
    expect(stoppedAt).toBeGreaterThan(1215);
    expect(stoppedAt).toBeLessThan(CUT);
    const partial = await windowAt(store, SPAN_START);
    expect(partial).toMatchObject({ trades: stoppedAt - 1210, is_final: false });
    expect(Number(await rows(store, 'SELECT count(*)::DOUBLE AS n FROM trades').then((r) => r[0].n))).toBe(stoppedAt);

    // The same command with the next file of the rotation: half1 goes on from its position, half2 from its start.
    const second = await run(['run', '--source', `replay:${HALF1}`, '--source', `replay:${HALF2}`, '--speed', 'max', '--sink', `duckdb:${store}`, '--no-dashboard']);
    expect(second.code, second.stderr).toBe(0);
    expect(messages(second.stderr)).toMatch(/resuming job "run" after batch \d+/);

    expect(await windowAt(store, SPAN_START)).toMatchObject({ trades: 180, is_final: true }); // not 54, not 180 - 54 + ...
    expect(await contents(store)).toEqual(await contents(WHOLE));
    expect(await expectOracle(store, KRAKEN_FILE)).toBe(60);
    const [finished] = await rows(store, `SELECT bool_and(finished) AS f FROM stream_progress WHERE job = 'run'`);
    expect(finished.f).toBe(true);
  }, 120_000);
});

describe('2. a live websocket feed stopped and restarted against a second server', () => {
  it('the windows hold every trade of both runs, and the restart logs the gap', async () => {
    const store = join(dir, 'split-live.duckdb');
    const serve = async (file: string) => {
      const server = spawnCoinstream(['replay-server', file, '--port', '0', '--speed', 'max']);
      const url = /ws:\/\/\S+/.exec(await server.waitFor('stdout', /listening on ws:\/\/\S+/))![0];
      return { server, url };
    };
    const liveRun = (url: string) =>
      spawnCoinstream(['run', '--source', `coincap@${url}`, '--sink', `duckdb:${store}`, '--no-dashboard', '--trigger', '100ms'], { COINSTREAM_LOG_LEVEL: 'debug' });

    const one = await serve(HALF1);
    const first = liveRun(one.url);
    await first.waitFor('stderr', (err) => tradesWritten(err) >= CUT);
    first.child.kill('SIGINT');
    expect((await first.exit).code, first.stderr()).toBe(0);
    expect(tradesWritten(first.stderr())).toBe(CUT);
    one.server.child.kill('SIGINT');
    expect((await one.server.exit).code).toBe(0);
    expect(await windowAt(store, SPAN_START)).toMatchObject({ trades: 126, is_final: false });

    const two = await serve(HALF2);
    const second = liveRun(two.url);
    await second.waitFor('stderr', (err) => tradesWritten(err) >= LINES.length - CUT);
    second.child.kill('SIGINT');
    expect((await second.exit).code, second.stderr()).toBe(0);
    expect(tradesWritten(second.stderr())).toBe(LINES.length - CUT);
    two.server.child.kill('SIGINT');
    expect((await two.server.exit).code).toBe(0);

    const gap = /live sources cannot be re-read: trades between (\S+) and now \((\d+(?:\.\d+)?) s\) were not received/.exec(messages(second.stderr()));
    expect(gap, second.stderr()).not.toBeNull();
    expect(Number(gap![2])).toBeGreaterThan(0);
    expect(messages(second.stderr())).toMatch(/resuming job "run" after batch \d+/);

    // The spanning window (126 trades from the first run, 54 from the second) and its neighbours, then all.
    for (const start of [SPAN_START - 60_000, SPAN_START, SPAN_START + 60_000]) {
      const live = await windowAt(store, start);
      const whole = await windowAt(WHOLE, start);
      expect(live, `window ${new Date(start).toISOString()}`).toMatchObject({ trades: whole.trades });
      expect(Math.abs((live.total_volume as number) - (whole.total_volume as number))).toBeLessThanOrEqual(1e-9 * (whole.total_volume as number));
    }
    expect((await windowAt(store, SPAN_START)).trades).toBe(180);
    const windows = `SELECT asset, epoch_ms(window_start)::DOUBLE AS s, trades::DOUBLE AS trades, round(total_volume, 9) AS v FROM trade_windows ORDER BY asset, s`;
    expect(await rows(store, windows)).toEqual(await rows(WHOLE, windows));
    expect(await rows(store, 'SELECT count(*)::DOUBLE AS n FROM trades')).toEqual([{ n: LINES.length }]);
  }, 60_000);
});

describe('3. several replay files are one stream merged by event time', () => {
  // The Kraken hour plus an ethereum copy (prices / 37, 7.001 s later), in event-time order: all valid.
  type Line = { ts: number; text: string };
  const all: Line[] = (() => {
    const btc = krakenRows();
    const eth = btc.map((t) => ({ ...t, base: 'ethereum', price: +(t.price / 37).toFixed(2), priceUsd: +(t.priceUsd / 37).toFixed(2), timestamp: t.timestamp + 7_001 }));
    return [...btc, ...eth].map((t, i) => ({ t, i })).sort((a, b) => a.t.timestamp - b.t.timestamp || a.i - b.i).map(({ t }) => ({ ts: t.timestamp, text: JSON.stringify(t) }));
  })();
  const consecutive = (n: number) => Array.from({ length: n }, (_, f) => all.slice(Math.floor((f * all.length) / n), Math.floor(((f + 1) * all.length) / n)));
  const interleaved = (n: number) => Array.from({ length: n }, (_, f) => all.filter((_, i) => i % n === f));

  it.each([
    ['2 consecutive', consecutive(2)],
    ['10 consecutive', consecutive(10)],
    ['2 interleaved', interleaved(2)],
    ['10 interleaved', interleaved(10)],
  ] as const)('%s files equal the oracle on the single file in merge order, 0 rejected', async (name, files) => {
    const slug = name.replace(' ', '-');
    expect(files.reduce((n, f) => n + f.length, 0)).toBe(all.length);
    const paths = files.map((lines, f) => {
      const path = join(dir, `${slug}-${f}.jsonl`);
      writeFileSync(path, lines.map((l) => l.text).join('\n') + '\n');
      return path;
    });
    // The merge order: all lines stable-sorted by (timestamp, file index).
    const merged = files.flatMap((lines, f) => lines.map((l, i) => ({ ...l, f, i }))).sort((a, b) => a.ts - b.ts || a.f - b.f || a.i - b.i);
    const single = join(dir, `${slug}-merged.jsonl`);
    writeFileSync(single, merged.map((l) => l.text).join('\n') + '\n');

    const store = join(dir, `${slug}.duckdb`);
    const r = await run(['run', ...paths.flatMap((p) => ['--source', `replay:${p}`]), '--speed', 'max', '--sink', `duckdb:${store}`, '--no-dashboard']);
    expect(r.code, r.stderr).toBe(0);
    expect(await rows(store, 'SELECT count(*)::DOUBLE AS n FROM rejected_trades')).toEqual([{ n: 0 }]);
    expect(await rows(store, 'SELECT count(*)::DOUBLE AS n FROM trades')).toEqual([{ n: all.length }]);
    expect(await expectOracle(store, single)).toBe(120);
  }, 30_000);
});

describe('4. refusals and --fresh on a finished job', () => {
  const store = join(dir, 'refusals.duckdb');
  const args = (...extra: string[]) => ['run', '--source', `replay:${KRAKEN_FILE}`, '--speed', 'max', '--sink', `duckdb:${store}`, '--no-dashboard', ...extra];

  beforeAll(async () => {
    const r = await run(args());
    expect(r.code, r.stderr).toBe(0);
  });

  // --window 5m alone is bad usage whatever the store holds (the default --trend-span 6m is not a
  // multiple of 5m), so the 5-minute runs say --trend-span 10m.
  it.each([
    [['--window', '5m', '--trend-span', '10m'], /the stored job used .*--window 1m.*, this run asks for .*--window 5m/],
    [['--slide', '30s'], /the stored job used .*--slide 1m.*, this run asks for .*--slide 30s/],
    [['--window-offset', '15s'], /the stored job used .*--window-offset.*, this run asks for .*--window-offset 15s/],
    [['--watermark', '1m'], /the stored job used .*--watermark 5m.*, this run asks for .*--watermark 1m/],
    [['--trend-span', '10m'], /the stored job used .*--trend-span 6m.*, this run asks for .*--trend-span 10m/],
    // Its trades table would hold part of the job (it went on without a word before).
    [['--archive', 'none'], /the stored job used --archive trades, this run asks for --archive none, and its trades table would hold only part of the job's trades/],
  ])('%j: exit 2, one line naming the setting and what to do, store untouched', async (extra, message) => {
    const before = await contents(store);
    const r = await run(args(...extra), { COINSTREAM_LOG_LEVEL: 'warn' });
    expect(r.code, r.stderr).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^coinstream: cannot resume: /);
    expect(lines[0]).toMatch(message);
    expect(lines[0]).toMatch(/; run with (the stored settings|--archive trades), or start over with --fresh/);
    expect(await contents(store)).toEqual(before);
  });

  it('a new store beside it does not let other settings through: exit 2 naming the store, the store untouched', async () => {
    const before = await contents(store);
    const added = join(dir, 'refusals-added.duckdb');
    const r = await run([...args('--window', '5m', '--trend-span', '10m'), '--sink', `duckdb:${added}`], { COINSTREAM_LOG_LEVEL: 'warn' });
    expect(r.code, r.stderr).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    // Before: exit 0, and 5-minute windows went into the store beside the 1-minute ones.
    expect(lines[0]).toMatch(/^coinstream: duckdb:\S+refusals\.duckdb: cannot resume: the stored job used .*--window 1m.*, this run asks for .*--window 5m/);
    expect(await contents(store)).toEqual(before);
  });

  it('--trigger 500ms is accepted: the job is finished, nothing changes', async () => {
    const before = await contents(store);
    const r = await run(args('--trigger', '500ms'));
    expect(r.code, r.stderr).toBe(0);
    expect(messages(r.stderr)).toMatch(/job "run" already finished at batch \d+/);
    expect(await contents(store)).toEqual(before);
  });

  it('--fresh --window 5m clears the job and starts over: 5-minute windows only, as a fresh store', async () => {
    const r = await run(args('--fresh', '--window', '5m', '--trend-span', '10m'));
    expect(r.code, r.stderr).toBe(0);
    expect(messages(r.stderr)).toMatch(/--fresh: cleared job "run"/);
    const [shape] = await rows(store, `SELECT count(*)::DOUBLE AS n, count(*) FILTER (WHERE window_end - window_start <> INTERVAL 5 MINUTE)::DOUBLE AS other FROM trade_windows`);
    expect(shape).toEqual({ n: 12, other: 0 });

    const fresh = join(dir, 'fresh-5m.duckdb');
    const f = await run(['run', '--source', `replay:${KRAKEN_FILE}`, '--speed', 'max', '--sink', `duckdb:${fresh}`, '--no-dashboard', '--window', '5m', '--trend-span', '10m']);
    expect(f.code, f.stderr).toBe(0);
    const count = 'SELECT (SELECT count(*) FROM trade_windows)::DOUBLE AS windows, (SELECT count(*) FROM price_trends)::DOUBLE AS trends, (SELECT count(*) FROM trades)::DOUBLE AS trades';
    expect(await rows(store, count)).toEqual(await rows(fresh, count));
    expect(await contents(store)).toEqual(await contents(fresh));
    expect(await expectOracle(store, KRAKEN_FILE, { ...DEFAULT_ORACLE, windowMs: 300_000, slideMs: 300_000, trendSpanMs: 600_000 })).toBe(12);
  });
});

describe('5. a replay file that changed after the job finished', () => {
  const once = (file: string, store: string, env: Record<string, string> = {}) =>
    run(['run', '--source', `replay:${file}`, '--speed', 'max', '--sink', `duckdb:${store}`, '--no-dashboard'], env);

  it('grown (a recording still being written): the same command reads the new lines; what was written final stays final', async () => {
    const file = join(dir, 'growing.jsonl');
    const store = join(dir, 'growing.duckdb');
    writeFileSync(file, readFileSync(HALF1));
    expect((await once(file, store)).code).toBe(0);
    expect(await windowAt(store, SPAN_START)).toMatchObject({ trades: 126, is_final: true });
    appendFileSync(file, readFileSync(HALF2));
    const again = await once(file, store);
    expect(again.code, again.stderr).toBe(0);
    expect(messages(again.stderr)).toMatch(/resuming job "run" after batch \d+ \([^)]+\): reading replay:\S+growing.jsonl from line 1337/);
    // The end of input wrote the minute 00:14 final with 126 trades; the 54 of it that came later are
    // late, as for any final window (before, the final row changed to 180 trades). Every other window
    // equals one run over the whole file.
    expect(await windowAt(store, SPAN_START)).toMatchObject({ trades: 126, is_final: true });
    const others = (path: string) => rows(path, `SELECT * EXCLUDE (updated_at) FROM trade_windows WHERE epoch_ms(window_start) <> ${SPAN_START} ORDER BY asset, window_start`);
    expect(await others(store)).toEqual(await others(WHOLE));
    const grown = await contents(store);
    expect(grown.rejected).toEqual([{ reason: 'late', n: 54 }]);
    expect(grown.trades).toHaveLength(LINES.length - 54);
    expect(grown.trends.every((t) => t.is_final)).toBe(true);
    // Run once more: nothing new, nothing to do.
    expect(messages((await once(file, store)).stderr)).toMatch(/job "run" already finished at batch \d+/);
  }, 60_000);

  it('grown .gz (a recording that `record` is still writing, gzip member by member): read on too', async () => {
    const file = join(dir, 'growing.jsonl.gz');
    const store = join(dir, 'growing-gz.duckdb');
    writeFileSync(file, gzipSync(readFileSync(HALF1)));
    expect((await once(file, store)).code).toBe(0);
    // Before, a finished job never looked into a .gz again: "already finished", for ever.
    appendFileSync(file, gzipSync(readFileSync(HALF2)));
    const again = await once(file, store);
    expect(again.code, again.stderr).toBe(0);
    expect(messages(again.stderr)).toMatch(/resuming job "run" after batch \d+ \([^)]+\): reading replay:\S+growing.jsonl.gz from line 1337/);
    const grown = await contents(store);
    expect(grown.rejected).toEqual([{ reason: 'late', n: 54 }]);
    expect(grown.trades).toHaveLength(LINES.length - 54);
    expect(messages((await once(file, store)).stderr)).toMatch(/job "run" already finished at batch \d+/);
  }, 60_000);

  it('two stores, killed once one of them had finished the job, the file grown meanwhile: the stores finish where it did, then read on as one finished job', async () => {
    const file = join(dir, 'finish-crash.jsonl');
    const a = join(dir, 'finish-crash-a.duckdb');
    const b = join(dir, 'finish-crash-b.duckdb');
    const reference = join(dir, 'finish-crash-ref.duckdb');
    const both = ['run', '--source', `replay:${file}`, '--speed', 'max', '--sink', `duckdb:${a}`, '--sink', `duckdb:${b}`, '--no-dashboard'];
    // The reference: finished, then the file grows, then the same command (the grown case above).
    const refFile = join(dir, 'finish-crash-ref.jsonl');
    writeFileSync(refFile, readFileSync(HALF1));
    expect((await once(refFile, reference)).code).toBe(0);
    appendFileSync(refFile, readFileSync(HALF2));
    expect((await once(refFile, reference)).code).toBe(0);

    // The finishing batch (the only one) reaches a, then the process dies: b holds nothing.
    writeFileSync(file, readFileSync(HALF1));
    expect((await run(both, { COINSTREAM_TEST_FAULT: 'kill-after-commit:0' })).code).not.toBe(0);
    appendFileSync(file, readFileSync(HALF2));
    const caughtUp = await run(both);
    expect(caughtUp.code, caughtUp.stderr).toBe(0);
    // b caught up to where a had finished, and both finished there: the new lines wait for the next run.
    expect(messages(caughtUp.stderr)).toMatch(/the stores are where duckdb:\S+finish-crash-a\.duckdb had finished the job, and finished there too/);
    // Before: the job ran on for b through the new lines without finishing at a's end, and rows a held
    // final took the later trades (17 -> 632 in the hunt).
    const onward = await run(both);
    expect(onward.code, onward.stderr).toBe(0);
    expect(messages(onward.stderr)).toMatch(/reading replay:\S+finish-crash.jsonl from line 1337/);
    const expected = await contents(reference);
    expect(await contents(a)).toEqual(expected);
    expect(await contents(b)).toEqual(expected);
  }, 90_000);

  it('a file added while one store is ahead of another after a crash: refused (exit 2), saying to add it once they agree', async () => {
    const a = join(dir, 'added-file-a.duckdb');
    const b = join(dir, 'added-file-b.duckdb');
    const sinks = ['--sink', `duckdb:${a}`, '--sink', `duckdb:${b}`, '--no-dashboard'];
    const killed = await run(['run', '--source', `replay:${HALF1}`, '--speed', '200', '--trigger', '100ms', ...sinks], { COINSTREAM_TEST_FAULT: 'kill-after-commit:3' });
    expect(killed.code).not.toBe(0);
    const before = await contents(a);
    const r = await run(['run', '--source', `replay:${HALF1}`, '--source', `replay:${HALF2}`, '--speed', 'max', ...sinks], { COINSTREAM_LOG_LEVEL: 'warn' });
    expect(r.code, r.stderr).toBe(2);
    // Before: exit 0, and the store ahead got 1,011 trades twice (the hunt), half2's records interleaving with ones it held.
    expect(r.stderr.trim()).toMatch(/^coinstream: replay:\S+half2\.jsonl is new to job "run", but duckdb:\S+added-file-a\.duckdb is ahead of duckdb:\S+added-file-b\.duckdb .*: run once without replay:\S+half2\.jsonl, so that the stores agree, then add it$/);
    expect(await contents(a)).toEqual(before);
    // As it says: once without it, then with it.
    expect((await run(['run', '--source', `replay:${HALF1}`, '--speed', 'max', ...sinks])).code).toBe(0);
    expect((await run(['run', '--source', `replay:${HALF1}`, '--source', `replay:${HALF2}`, '--speed', 'max', ...sinks])).code).toBe(0);
    expect(await contents(a)).toEqual(await contents(b));
  }, 90_000);

  it('a last line still being written is left unread, and read whole by the next run: nothing rejected, nothing refused', async () => {
    const file = join(dir, 'half-written.jsonl');
    const store = join(dir, 'half-written.duckdb');
    const grownStore = join(dir, 'half-written-reference.duckdb');
    // The reference: the same two steps with the cut after a whole line (the grown case above).
    writeFileSync(file.replace('.jsonl', '-reference.jsonl'), readFileSync(HALF1));
    expect((await once(file.replace('.jsonl', '-reference.jsonl'), grownStore)).code).toBe(0);
    appendFileSync(file.replace('.jsonl', '-reference.jsonl'), readFileSync(HALF2));
    expect((await once(file.replace('.jsonl', '-reference.jsonl'), grownStore)).code).toBe(0);

    // Line 1337, the first of half2, is half-way written when the first run reads the file.
    const next = Buffer.from(LINES[CUT]);
    writeFileSync(file, Buffer.concat([readFileSync(HALF1), next.subarray(0, 40)]));
    const first = await once(file, store);
    expect(first.code, first.stderr).toBe(0);
    expect(messages(first.stderr)).toMatch(/line 1,337 \(its last, 40 bytes\) has no newline and is not a whole message: left unread/);
    expect(messages(first.stderr)).toMatch(/done: 1336 trades aggregated .*; 0 rejected .*1 damaged source/);
    appendFileSync(file, Buffer.concat([next.subarray(40), Buffer.from('\n'), Buffer.from(LINES.slice(CUT + 1).join('\n') + '\n')]));
    const again = await once(file, store);
    expect(again.code, again.stderr).toBe(0);
    expect(messages(again.stderr)).toMatch(/reading replay:\S+half-written.jsonl from line 1337/);
    expect(messages(again.stderr)).not.toMatch(/left unread/);
    expect(await contents(store)).toEqual(await contents(grownStore));
  }, 60_000);

  it.each([
    ['truncated', () => readFileSync(HALF1), /stopped at byte [\d,]+ \(after line 2,672\) of this file, but the file now holds [\d,]+ bytes: it was truncated or replaced since/],
    // Two spaces before the same lines but the first: the stored offset falls inside a line.
    ['edited', () => Buffer.from([LINES[0], '  ' + LINES.slice(1).join('\n'), ...LINES.slice(CUT)].join('\n') + '\n'), /that byte is in the middle of a line of the file as it is now: it was replaced or edited since/],
    // The same lines in another order, then more (a file rotated in place and written again): the
    // stored offset falls where a line starts; the first line tells the files apart.
    ['rotated', () => Buffer.from([...LINES].reverse().join('\n') + '\n' + LINES.slice(CUT).join('\n') + '\n'), /its first line is not the one it had then: the file was replaced, rotated or edited since/],
    // The same lines in another order, nothing more: the same size, so the finished job said "already
    // finished" and read nothing; its first line differs.
    ['replaced, same size', () => Buffer.from(readFileSync(KRAKEN_FILE, 'utf8').split('\n').filter(Boolean).reverse().join('\n') + '\n'), /its first line is not the one it had then: the file was replaced, rotated or edited since/],
  ])('%s: exit 2, one line saying so and what to do, the store left as it was', async (name, content, message) => {
    const file = join(dir, `${name}.jsonl`);
    const store = join(dir, `${name}.duckdb`);
    writeFileSync(file, readFileSync(KRAKEN_FILE));
    expect((await once(file, store)).code).toBe(0);
    const before = { ...(await contents(store)), progress: await rows(store, 'SELECT * FROM stream_progress ORDER BY source') };
    writeFileSync(file, content());
    const r = await once(file, store, { COINSTREAM_LOG_LEVEL: 'warn' });
    expect(r.code, r.stderr).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
    expect(lines[0]).toMatch(/start the job over with --fresh/);
    expect({ ...(await contents(store)), progress: await rows(store, 'SELECT * FROM stream_progress ORDER BY source') }).toEqual(before);
  }, 60_000);
});
