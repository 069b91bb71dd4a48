// DESIGN.md, "Recovery": kill the process at any moment and start the same command again: every store
// ends equal, row for row, to an uninterrupted run's, `trades` and `rejected_trades` included.
//
// One input (1,000,000 real Kraken trades shifted hour by hour, two assets, plus malformed/invalid lines
// and late trades), one uninterrupted reference run, then one fresh store per kill point: the killed
// run, then the same command again until it exits 0, then a row-for-row comparison with the reference.
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DuckDBConnection } from '@duckdb/node-api';
import { queryRows, withDuckDB } from '../../src/sinks/duckdb/open.js';
import { killAll, spawnCoinstream, type Spawned } from '../helpers/process.js';
import { DEFAULT_ORACLE, oracleDiffs, runOracle } from '../oracle/oracle.js';
import { BAD_LINES, KRAKEN_FILE } from '../oracle/inputs.js';

const N = 1_000_000;
const dir = mkdtempSync(join(tmpdir(), 'coinstream-kill-'));
const FILE = join(dir, 'trades.jsonl');
const REF = join(dir, 'ref.duckdb');

// KEEP_KILL_DIR=1 keeps the input and the stores (named in the failure messages) for a look afterwards.
afterAll(() => {
  killAll();
  if (!process.env.KEEP_KILL_DIR) rmSync(dir, { recursive: true, force: true });
});

/**
 * Like bench's makeInput: the Kraken hour repeated with its timestamps shifted hour by hour, every
 * other hour relabelled ethereum. Plus every 5,000th line one of BAD_LINES, and after every 997th trade
 * a copy of it from 30 minutes earlier (late: the watermark is long past it).
 */
function makeInput(): { trades: number; bad: number; late: number } {
  const hour = readFileSync(KRAKEN_FILE, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, number | string> & { timestamp: number; price: number });
  const fd = openSync(FILE, 'w');
  let written = 0;
  let lines = 0;
  let bad = 0;
  let late = 0;
  try {
    for (let rep = 0; written < N; rep++) {
      const shift = rep * 3_600_000;
      const eth = rep % 2 === 1;
      const chunk: string[] = [];
      for (const t of hour) {
        if (written >= N) break;
        const price = eth ? Math.round((t.price / 20) * 100) / 100 : t.price;
        const trade = { ...t, base: eth ? 'ethereum' : 'bitcoin', price, priceUsd: price, timestamp: t.timestamp + shift };
        chunk.push(JSON.stringify(trade));
        written++;
        if (++lines % 5_000 === 0) chunk.push(BAD_LINES[bad++ % BAD_LINES.length]), lines++;
        if (written % 997 === 0) chunk.push(JSON.stringify({ ...trade, timestamp: trade.timestamp - 30 * 60_000 })), late++, lines++;
      }
      writeSync(fd, chunk.join('\n') + '\n');
    }
  } finally {
    closeSync(fd);
  }
  return { trades: written, bad, late };
}

const args = (store: string) => ['run', '--source', `replay:${FILE}`, '--speed', 'max', '--sink', `duckdb:${store}`, '--no-dashboard'];

interface Finished {
  ms: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Starts the command on `store` (debug logs: one `batch written` line per committed batch). */
function start(store: string, fault?: string, env: Record<string, string> = {}): { run: Spawned; done: Promise<Finished> } {
  const t0 = performance.now();
  const run = spawnCoinstream(args(store), { COINSTREAM_LOG_LEVEL: 'debug', ...(fault ? { COINSTREAM_TEST_FAULT: fault } : {}), ...env });
  const done = run.exit.then(({ code, signal }) => ({ ms: performance.now() - t0, code, signal, stderr: run.stderr() }));
  return { run, done };
}

const batchesWritten = (stderr: string) => stderr.split('\n').filter((l) => l.includes('"msg":"batch written"')).length;
const resumedAfter = (stderr: string): number | null => {
  const m = /resuming job \\?"run\\?" after batch (\d+)/.exec(stderr);
  return m ? Number(m[1]) : null;
};

/** A killed run must have ended by SIGKILL; a run that finished first is said so. */
function expectKilled(r: Finished, point: string): void {
  const how =
    r.code === 0 ? `the process FINISHED (exit 0) before the kill point ${point} was reached` : `the process ended with code ${r.code} signal ${r.signal}, not by SIGKILL, at kill point ${point}`;
  expect(r.signal === 'SIGKILL' || r.code === 137, `${how}\n--- stderr (tail) ---\n${r.stderr.slice(-3000)}`).toBe(true);
}

/** The same command again, without the fault: must run to the end (exit 0). */
async function restart(store: string, fault?: string, env: Record<string, string> = {}): Promise<Finished & { resumed: number | null }> {
  const r = await start(store, fault, env).done;
  if (!fault) expect(r.code, `restart of ${args(store).join(' ')} did not exit 0\n--- stderr (tail) ---\n${r.stderr.slice(-3000)}`).toBe(0);
  return { ...r, resumed: resumedAfter(r.stderr) };
}

const rowsOf = async (conn: DuckDBConnection, sql: string) => (await conn.runAndReadAll(sql)).getRowObjectsJS();
const sqlPath = (p: string) => `'${p.replace(/'/g, "''")}'`;

/**
 * `select` (with {db} for the catalog) on both stores: the rows of each side that the other does not
 * have, as a multiset (EXCEPT ALL both ways), at most 5 of each, ordered by `orderBy`.
 */
async function diff(conn: DuckDBConnection, select: string, orderBy = '1'): Promise<Record<string, unknown>[]> {
  const ref = select.replaceAll('{db}', 'r');
  const got = select.replaceAll('{db}', 's');
  return rowsOf(
    conn,
    `(SELECT 'only in reference' AS side, * FROM (${ref} EXCEPT ALL ${got}) ORDER BY ${orderBy} LIMIT 5)
     UNION ALL
     (SELECT 'only in restarted store' AS side, * FROM (${got} EXCEPT ALL ${ref}) ORDER BY ${orderBy} LIMIT 5)`,
  );
}

const show = (rows: Record<string, unknown>[]) => JSON.stringify(rows, (_k, v) => (typeof v === 'bigint' ? Number(v) : v), 1);

/** The restarted store equals the reference, row for row (processing-time columns aside). */
async function expectEqualToReference(store: string, point: string): Promise<void> {
  await withDuckDB(':memory:', async (conn) => {
    await conn.run(`ATTACH ${sqlPath(REF)} AS r (READ_ONLY); ATTACH ${sqlPath(store)} AS s (READ_ONLY)`);
    const what = (table: string) => `${point}: ${table} of ${store} differs from the uninterrupted run's`;

    const windows = await diff(conn, `SELECT * EXCLUDE (updated_at) FROM {db}.trade_windows`, 'asset, window_start');
    expect(windows, `${what('trade_windows')}: ${show(windows)}`).toEqual([]);
    const trends = await diff(conn, `SELECT * FROM {db}.price_trends`, 'asset, window_start');
    expect(trends, `${what('price_trends')}: ${show(trends)}`).toEqual([]);

    // trades: the same rows in the same (arrival) order; received_at is when the line was read.
    const trades = await diff(conn, `SELECT row_number() OVER () AS n, * EXCLUDE (received_at) FROM {db}.trades`, 'n');
    expect(trades, `${what('trades')} (n = position in the view): ${show(trades)}`).toEqual([]);

    // Everything but received_at, detail as written (it holds no processing time: the line number and what was wrong).
    const rejected = await diff(conn, `SELECT source, reason, detail, raw FROM {db}.rejected_trades`, 'detail');
    expect(rejected, `${what('rejected_trades')}: ${show(rejected)}`).toEqual([]);

    const [c] = await rowsOf(
      conn,
      `SELECT ${['r', 's']
        .flatMap((db) => [
          `(SELECT count(*) FROM ${db}.trades)::DOUBLE AS ${db}_trades`,
          `(SELECT count(*) FROM ${db}.rejected_trades)::DOUBLE AS ${db}_rejected`,
          `(SELECT count(*) FROM ${db}.trade_windows)::DOUBLE AS ${db}_windows`,
          `(SELECT count(*) FROM ${db}.trade_windows WHERE NOT is_final)::DOUBLE AS ${db}_windows_not_final`,
          `(SELECT count(*) FROM ${db}.price_trends WHERE NOT is_final)::DOUBLE AS ${db}_trends_not_final`,
          `(SELECT count(*) FROM ${db}.stream_progress WHERE job = 'run' AND source = '*' AND finished)::DOUBLE AS ${db}_finished`,
        ])
        .join(', ')}`,
    );
    expect(c.s_trades, `${point}: trades count`).toBe(c.r_trades);
    expect(c.s_rejected, `${point}: rejected_trades count`).toBe(c.r_rejected);
    expect(c.s_windows, `${point}: trade_windows count`).toBe(c.r_windows);
    expect([c.r_windows_not_final, c.s_windows_not_final, c.r_trends_not_final, c.s_trends_not_final], `${point}: rows not final (ref windows, store windows, ref trends, store trends)`).toEqual([0, 0, 0, 0]);
    expect([c.r_finished, c.s_finished], `${point}: one finished '*' progress row (reference, store)`).toEqual([1, 1]);
  });
}

async function expectOracle(store: string): Promise<void> {
  await withDuckDB(':memory:', async (conn) => {
    await conn.run(`ATTACH ${sqlPath(store)} AS st (READ_ONLY)`);
    // runOracle ends with oracle_trends: a join of every window with every trade of its asset, ~50 s
    // at 1M trades on this machine. Only trade_windows is checked here, so that last statement is cut.
    let cut = false;
    const windowsOnly = {
      run: (sql: string) => conn.run(sql.replace(/CREATE OR REPLACE TEMP TABLE oracle_trends AS[\s\S]*$/, () => ((cut = true), ''))),
    } as unknown as DuckDBConnection;
    await runOracle(windowsOnly, FILE, DEFAULT_ORACLE);
    expect(cut, 'the oracle_trends statement was found and left out').toBe(true);
    const { windows } = await oracleDiffs(conn, { db: 'st', trends: false });
    expect(windows, `trade_windows of ${store} differs from the SQL oracle: ${show(windows)}`).toEqual([]);
    // The oracle's verdicts, line by line, against what the store accepted and rejected.
    const stored = await rowsOf(conn, `SELECT reason, count(*)::DOUBLE AS n FROM st.rejected_trades GROUP BY reason UNION ALL SELECT 'accepted', count(*)::DOUBLE FROM st.trades ORDER BY reason`);
    const expected = await rowsOf(conn, `SELECT verdict AS reason, count(*)::DOUBLE AS n FROM oracle_lines WHERE verdict <> 'blank' GROUP BY verdict ORDER BY reason`);
    expect(stored, 'accepted and rejected lines, by reason, against the oracle').toEqual(expected);
  });
}

const fmt = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const report = (point: string, killed: Finished[], restarts: (Finished & { resumed: number | null })[]) =>
  console.log(
    `${point}: killed run ${killed.map((k) => `${fmt(k.ms)} (${k.signal ?? `code ${k.code}`}, ${batchesWritten(k.stderr)} batches logged)`).join(' + ')}; ` +
      restarts.map((r) => `restart resumed after batch ${r.resumed ?? 'none (no progress: started over)'} in ${fmt(r.ms)}`).join('; '),
  );

let reference: Finished;

describe('recovery: SIGKILL at any moment, then the same command again, ends equal to an uninterrupted run', () => {
  beforeAll(async () => {
    const made = makeInput();
    expect(made.trades).toBe(N);
    reference = await start(REF).done;
    expect(reference.code, reference.stderr.slice(-3000)).toBe(0);
    // Enough batches that every kill point below falls inside the run: up to batch 4 in a first run
    // (the reference has 6: two of one row group, then of two). A restart starts again with batches of
    // one row group, so it cuts more than the reference from the same point: its kill points go to 6.
    expect(batchesWritten(reference.stderr), 'batches of the reference run').toBeGreaterThanOrEqual(6);
    const [c] = await withDuckDB(
      REF,
      (conn) => rowsOf(conn, `SELECT (SELECT count(*) FROM trades)::DOUBLE AS trades, (SELECT count(*) FROM rejected_trades)::DOUBLE AS rejected, (SELECT count(DISTINCT reason) FROM rejected_trades)::DOUBLE AS reasons`),
      { readOnly: true },
    );
    expect(c.rejected, 'rejected_trades of the reference').toBeGreaterThanOrEqual(made.bad + made.late * 0.9);
    expect(c.reasons, 'malformed, invalid and late rejections').toBe(3);
    console.log(`input: ${made.trades} trades + ${made.bad} bad lines + ${made.late} late copies; reference: ${fmt(reference.ms)}, ${batchesWritten(reference.stderr)} batches, ${c.trades} trades, ${c.rejected} rejected`);
  }, 60_000);

  it('a. before the first commit: SIGKILL from outside as soon as the pipeline has started', async () => {
    const store = join(dir, 'a-started.duckdb');
    const { run, done } = start(store);
    await run.waitFor('stderr', /pipeline started/).catch(() => undefined); // finished first: expectKilled says so
    run.child.kill('SIGKILL');
    const killed = await done;
    expectKilled(killed, "SIGKILL at 'pipeline started'");
    const again = await restart(store);
    report('a. SIGKILL at pipeline started', [killed], [again]);
    await expectEqualToReference(store, "a. SIGKILL at 'pipeline started'");
  }, 60_000);

  it('a. before the first commit: kill-before-commit:0', async () => {
    const store = join(dir, 'a-before-0.duckdb');
    const killed = await start(store, 'kill-before-commit:0').done;
    expectKilled(killed, 'kill-before-commit:0');
    expect(batchesWritten(killed.stderr), 'batches written before the kill').toBe(0);
    const again = await restart(store);
    expect(again.resumed, 'nothing was committed: the restart starts over').toBeNull();
    report('a. kill-before-commit:0', [killed], [again]);
    await expectEqualToReference(store, 'a. kill-before-commit:0');
  }, 60_000);

  it('a. while the new store file is being made (the run already reading): kill-creating-store:0', async () => {
    const store = join(dir, 'a-creating.duckdb');
    const killed = await start(store, 'kill-creating-store:0').done;
    expectKilled(killed, 'kill-creating-store:0');
    expect(existsSync(store), 'DuckDB had made the file, without our tables').toBe(true);
    const again = await restart(store);
    expect(again.resumed, 'nothing was stored: the restart starts over').toBeNull();
    report('a. kill-creating-store:0', [killed], [again]);
    await expectEqualToReference(store, 'a. kill-creating-store:0');
  }, 60_000);

  it('b. between commits: SIGKILL from outside right after the 3rd batch written', async () => {
    const store = join(dir, 'b-between.duckdb');
    const { run, done } = start(store);
    await run.waitFor('stderr', (out) => batchesWritten(out) >= 3, 60_000).catch(() => undefined);
    run.child.kill('SIGKILL');
    const killed = await done;
    expectKilled(killed, "SIGKILL after the 3rd 'batch written'");
    const again = await restart(store);
    // Batches 0..2 were committed; the next one may have committed before the signal landed.
    expect(again.resumed, 'the restart resumes after a committed batch').toBeGreaterThanOrEqual(2);
    report('b. SIGKILL after 3rd batch written', [killed], [again]);
    await expectEqualToReference(store, "b. SIGKILL after the 3rd 'batch written'");
  }, 60_000);

  it('c. inside a commit: kill-before-commit:4 (rows appended, not committed)', async () => {
    const store = join(dir, 'c-before-4.duckdb');
    const killed = await start(store, 'kill-before-commit:4').done;
    expectKilled(killed, 'kill-before-commit:4');
    const again = await restart(store);
    expect(again.resumed, 'batch 4 was rolled back: resume after batch 3').toBe(3);
    report('c. kill-before-commit:4', [killed], [again]);
    await expectEqualToReference(store, 'c. kill-before-commit:4');
  }, 60_000);

  it('c. inside a commit: kill-after-commit:2 (committed, the pipeline never heard of it)', async () => {
    const store = join(dir, 'c-after-2.duckdb');
    const killed = await start(store, 'kill-after-commit:2').done;
    expectKilled(killed, 'kill-after-commit:2');
    const again = await restart(store);
    expect(again.resumed, 'batch 2 was committed: resume after batch 2').toBe(2);
    report('c. kill-after-commit:2', [killed], [again]);
    await expectEqualToReference(store, 'c. kill-after-commit:2');
  }, 60_000);

  const twice = join(dir, 'd-twice.duckdb');

  it('d. twice in a row: kill-before-commit:3, restart killed at kill-before-commit:6, restart clean; and the SQL oracle', async () => {
    const first = await start(twice, 'kill-before-commit:3').done;
    expectKilled(first, 'kill-before-commit:3');
    const second = await restart(twice, 'kill-before-commit:6');
    expectKilled(second, 'kill-before-commit:6 (on the first restart)');
    expect(second.resumed, 'first restart: batch 3 was rolled back, resume after batch 2').toBe(2);
    const third = await restart(twice);
    expect(third.resumed, 'second restart: batch 6 was rolled back, resume after batch 5').toBe(5);
    report('d. kill-before-commit:3 then :6', [first, second], [second, third]);
    await expectEqualToReference(twice, 'd. kill-before-commit:3, then kill-before-commit:6');
    await expectOracle(twice);
  }, 120_000);

  it('with the lines scanned on two parse threads: kill-before-commit:3, restart killed at kill-after-commit:5, restart clean; and the SQL oracle', async () => {
    // The threads only read lines: positions, late decisions and every batch must come out as in the
    // reference run, which scanned on one thread.
    const store = join(dir, 'threads.duckdb');
    const threads = { COINSTREAM_PARSE_THREADS: '2' };
    const first = await start(store, 'kill-before-commit:3', threads).done;
    expectKilled(first, 'kill-before-commit:3 (parse threads)');
    const second = await restart(store, 'kill-after-commit:5', threads);
    expectKilled(second, 'kill-after-commit:5 (parse threads, on the first restart)');
    expect(second.resumed, 'first restart: batch 3 was rolled back, resume after batch 2').toBe(2);
    const third = await restart(store, undefined, threads);
    expect(third.resumed, 'second restart: batch 5 was committed, resume after it').toBe(5);
    report('parse threads: kill-before-commit:3 then kill-after-commit:5', [first, second], [second, third]);
    await expectEqualToReference(store, 'parse threads: kill-before-commit:3, then kill-after-commit:5');
    await expectOracle(store);
  }, 120_000);

  it('two stores, killed after the first committed a batch the second never got: both end equal to the uninterrupted run', async () => {
    const a = join(dir, 'two-a.duckdb');
    const b = join(dir, 'two-b.duckdb');
    const both = [...args(a), '--sink', `duckdb:${b}`];
    // Each batch goes to a, then to b: killed right after a's commit of batch 3, b holds batches 0-2.
    const killed = spawnCoinstream(both, { COINSTREAM_LOG_LEVEL: 'debug', COINSTREAM_TEST_FAULT: 'kill-after-commit:3' });
    const k = await killed.exit;
    expect(k.signal === 'SIGKILL' || k.code === 137, killed.stderr().slice(-2000)).toBe(true);
    const [pa] = await queryRows(a, "SELECT batch_id::DOUBLE AS b FROM stream_progress WHERE source = '*'");
    const [pb] = await queryRows(b, "SELECT batch_id::DOUBLE AS b FROM stream_progress WHERE source = '*'");
    expect([pa.b, pb.b]).toEqual([3, 2]);

    const again = spawnCoinstream(both, { COINSTREAM_LOG_LEVEL: 'debug' });
    const r = await again.exit;
    expect(r.code, again.stderr().slice(-3000)).toBe(0);
    // It went on from the store behind; the one ahead skipped what it held, then took everything.
    expect(resumedAfter(again.stderr())).toBe(2);
    expect(again.stderr()).toMatch(/two-a\.duckdb is ahead \(batch 3\): it skips the records it already holds/);
    expect(again.stderr()).toMatch(/two-a\.duckdb has caught up/);
    await expectEqualToReference(a, 'two stores, the one ahead');
    await expectEqualToReference(b, 'two stores, the one behind');
  }, 120_000);

  it('a store added, then killed: the job goes on from the store behind by position, not by batch id; the store ahead keeps its final windows', async () => {
    const a = join(dir, 'added-a.duckdb');
    const b = join(dir, 'added-b.duckdb');
    const killedRun = async (sinks: string[], fault: string) => {
      const run = spawnCoinstream([...args(sinks[0]), ...sinks.slice(1).flatMap((s) => ['--sink', `duckdb:${s}`])], { COINSTREAM_LOG_LEVEL: 'debug', COINSTREAM_TEST_FAULT: fault });
      const k = await run.exit;
      expect(k.signal === 'SIGKILL' || k.code === 137, run.stderr().slice(-2000)).toBe(true);
    };
    const stored = async (store: string) => (await queryRows(store, "SELECT batch_id::DOUBLE AS b, (SELECT max((position::JSON->>'offset')::DOUBLE) FROM stream_progress WHERE source <> '*') AS at FROM stream_progress WHERE source = '*'"))[0];
    // a alone holds batches 0-2 (491,520 trades: two batches of one row group, then one of two). Then b
    // is added, in front: the job starts over for b (batch ids go on at 3), a skips what it holds, and
    // the run is killed once b committed batch 4. b holds the higher batch id at the earlier position,
    // and a was handed batch 3 while it skipped.
    await killedRun([a], 'kill-after-commit:2');
    await killedRun([b, a], 'kill-after-commit:4');
    const [sa, sb] = [await stored(a), await stored(b)];
    expect([sa.b, sb.b]).toEqual([2, 4]);
    expect(sb.at).toBeLessThan(sa.at as number);
    // A copy of a as it is now, to go on alone below.
    const alone = join(dir, 'added-a-alone.duckdb');
    for (const ext of ['', '.wal']) if (existsSync(a + ext)) writeFileSync(alone + ext, readFileSync(a + ext));

    // Both again: from b's position (by batch id it was a's, and b lost every record between the two).
    const again = spawnCoinstream([...args(b), '--sink', `duckdb:${a}`], { COINSTREAM_LOG_LEVEL: 'debug' });
    const r = await again.exit;
    expect(r.code, again.stderr().slice(-3000)).toBe(0);
    expect(resumedAfter(again.stderr())).toBe(4);
    expect(again.stderr()).toMatch(/added-a\.duckdb is ahead \(batch 2\): it skips the records it already holds/);
    await expectEqualToReference(b, 'a store added: the one behind');
    await expectEqualToReference(a, 'a store added: the one ahead');
    // a alone from its own progress: while it skipped, it was written nothing (the earlier states of its
    // windows had replaced its final ones, and nothing wrote them again).
    const solo = await restart(alone);
    expect(solo.resumed).toBe(2);
    await expectEqualToReference(alone, 'a store added, then going on alone');
  }, 180_000);

  it('a finished job started again exits 0, says so, and writes nothing', async () => {
    const snapshot = (store: string) =>
      withDuckDB(
        store,
        (conn) =>
          rowsOf(
            conn,
            `SELECT (SELECT count(*) FROM trades)::DOUBLE AS trades, (SELECT count(*) FROM rejected_trades)::DOUBLE AS rejected,
                    (SELECT count(*) FROM trade_windows)::DOUBLE AS windows, (SELECT count(*) FROM price_trends)::DOUBLE AS trends,
                    (SELECT list((source, batch_id, finished, updated_at) ORDER BY source)::VARCHAR FROM stream_progress WHERE job = 'run') AS progress`,
          ),
        { readOnly: true },
      );
    const before = await snapshot(twice);
    const again = await start(twice).done;
    expect(again.code, again.stderr.slice(-3000)).toBe(0);
    expect(again.stderr).toMatch(/job \\?"run\\?" already finished at batch \d+/);
    expect(batchesWritten(again.stderr), 'batches written by a finished job').toBe(0);
    expect(await snapshot(twice), 'the store after starting a finished job again').toEqual(before);
    console.log(`finished job started again: exit 0 in ${fmt(again.ms)}, nothing written`);
  }, 60_000);
});
