// `coinstream process` against librdkafka's mock cluster (3 brokers, a 3-partition topic), fed by kcat,
// an independent client: --available-now equals the SQL oracle and a `run` of the same lines; SIGKILL
// mid-stream and the same command again equals the uninterrupted result; re-sent records are dropped
// as duplicates by their (run, seq) headers.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows, withDuckDB } from '../../src/sinks/duckdb/open.js';
import { kafkaUnavailable, startMockKafka, type MockKafka } from '../helpers/kafka-mock.js';
import { killAll, spawnCoinstream, type Spawned } from '../helpers/process.js';
import { BAD_LINES, krakenRows } from '../oracle/inputs.js';
import { expectEqualToDuckDB } from '../sinks/sql-compare.js';
import { PEERS } from '../sinks/sql-peers.js';
import { DEFAULT_ORACLE, oracleDiffs, runOracle } from '../oracle/oracle.js';

const why = kafkaUnavailable();
if (why && process.env.COINSTREAM_REQUIRE_SERVICES === '1') throw new Error(why);
if (why) console.log(`skipping the process tests: ${why}`);

const dir = mkdtempSync(join(tmpdir(), 'coinstream-process-'));
const FILE = join(dir, 'lines.jsonl');
const REF = join(dir, 'run.duckdb');
const DEBUG = { COINSTREAM_LOG_LEVEL: 'debug' };

/**
 * bitcoin and ethereum trading at the same moments (the Kraken hour twice, interleaved), so that the
 * watermark of a partition holding either asset moves as the file's does: per-partition and global
 * event time agree on what is late. Plus malformed and invalid lines and trades from 30 minutes ago.
 */
function makeLines(): string[] {
  const lines: string[] = [];
  let bad = 0;
  krakenRows().forEach((t, i) => {
    lines.push(JSON.stringify(t));
    const eth = { ...t, base: 'ethereum', price: Math.round((Number(t.price) / 20) * 100) / 100, priceUsd: Math.round((Number(t.priceUsd) / 20) * 100) / 100 };
    lines.push(JSON.stringify(eth));
    if (i > 0 && i % 97 === 0) lines.push(BAD_LINES[bad++ % BAD_LINES.length]);
    if (i > 400 && i % 151 === 0) lines.push(JSON.stringify({ ...eth, timestamp: Number(t.timestamp) - 30 * 60_000 }));
  });
  return lines;
}

/** Produces lines with kcat, keyed by their base (malformed ones by "x"), in order. */
function produce(brokers: string, topic: string, lines: string[], headers: string[] = []): void {
  const keyed = lines.map((l) => {
    let key = 'x';
    try {
      const v = JSON.parse(l) as { base?: unknown };
      if (typeof v?.base === 'string' && v.base) key = v.base;
    } catch {
      // malformed: any key
    }
    return `${key}\t${l}`;
  });
  const r = spawnSync('kcat', ['-b', brokers, '-P', '-t', topic, '-K', '\t', ...headers.flatMap((h) => ['-H', h])], { input: keyed.join('\n') + '\n', encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`kcat -P failed: ${r.stderr}`);
}

async function finished(run: Spawned): Promise<string> {
  const { code, signal } = await run.exit;
  expect(code, `exited with ${code} (${signal})\n${run.stderr().slice(-4000)}`).toBe(0);
  return run.stderr();
}

const rowsOf = async (conn: DuckDBConnection, sql: string) => (await conn.runAndReadAll(sql)).getRowObjectsJS();
const rowsOfStore = (path: string, sql: string) => queryRows(path, sql, { readOnly: true });
const show = (rows: unknown) => JSON.stringify(rows, (_k, v) => (typeof v === 'bigint' ? Number(v) : v), 1);
const sqlPath = (p: string) => `'${p.replace(/'/g, "''")}'`;

/** Rows of each side the other lacks (multisets), at most 5 each; `{db}` names the catalog. */
async function diff(conn: DuckDBConnection, a: string, b: string, select: string): Promise<Record<string, unknown>[]> {
  const x = select.replaceAll('{db}', a);
  const y = select.replaceAll('{db}', b);
  return rowsOf(conn, `(SELECT '${a} only' AS side, * FROM (${x} EXCEPT ALL ${y}) LIMIT 5) UNION ALL (SELECT '${b} only' AS side, * FROM (${y} EXCEPT ALL ${x}) LIMIT 5)`);
}

/** Two DuckDB stores hold the same windows, trends and trades; rejections compared by `rejected`. */
async function expectSameStores(a: string, b: string, what: string, rejected = 'SELECT reason, detail, raw FROM {db}.rejected_trades'): Promise<void> {
  await withDuckDB(':memory:', async (conn) => {
    await conn.run(`ATTACH ${sqlPath(a)} AS a (READ_ONLY); ATTACH ${sqlPath(b)} AS b (READ_ONLY)`);
    for (const [table, select] of [
      ['trade_windows', 'SELECT * EXCLUDE (updated_at) FROM {db}.trade_windows'],
      ['price_trends', 'SELECT * FROM {db}.price_trends'],
      ['trades', 'SELECT * EXCLUDE (received_at) FROM {db}.trades'],
      ['rejected_trades', rejected],
    ]) {
      const d = await diff(conn, 'a', 'b', select);
      expect(d, `${what}: ${table} differs: ${show(d)}`).toEqual([]);
    }
  });
}

/** A fresh MySQL database for `work` (dropped after), or a skip with the reason when MariaDB is not there (a failure in CI). */
async function withMysql(work: (mysql: (typeof PEERS)[number], db: string) => Promise<void>): Promise<void> {
  const mysql = PEERS.find((p) => p.kind === 'mysql')!;
  const down = await mysql.unreachable();
  if (down && process.env.COINSTREAM_REQUIRE_SERVICES === '1') throw new Error(down);
  if (down) return console.log(`skipped: ${down}`);
  const db = await mysql.create();
  try {
    await work(mysql, db);
  } finally {
    await mysql.drop(db);
    await mysql.end();
  }
}

describe.skipIf(why !== null)('coinstream process', () => {
  let cluster: MockKafka;
  const lines = makeLines();

  beforeAll(async () => {
    writeFileSync(FILE, lines.join('\n') + '\n');
    cluster = await startMockKafka(3);
    await cluster.createTopic('coincap_trade', 3);
    await cluster.createTopic('coincap_trade.rejected', 3);
    produce(cluster.brokers, 'coincap_trade', lines);
    const ref = spawnCoinstream(['run', '--source', `replay:${FILE}`, '--speed', 'max', '--no-dashboard', '--sink', `duckdb:${REF}`]);
    await finished(ref);
  }, 120_000);

  afterAll(async () => {
    killAll();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const processArgs = (store: string, group: string, ...more: string[]) => ['process', '--brokers', cluster.brokers, '--group', group, '--sink', `duckdb:${store}`, ...more];
  const uninterrupted = join(dir, 'available-now.duckdb');

  it('--available-now: every record once; windows and trends equal the SQL oracle, rejections its verdicts; exits 0', async () => {
    const err = await finished(spawnCoinstream(processArgs(uninterrupted, 'g-now', '--available-now')));
    expect(err).toMatch(/assigned coincap_trade\/0/);
    await withDuckDB(':memory:', async (conn) => {
      await conn.run(`ATTACH ${sqlPath(uninterrupted)} AS st (READ_ONLY)`);
      await runOracle(conn, FILE, DEFAULT_ORACLE);
      const { windows, trends } = await oracleDiffs(conn, { db: 'st' });
      expect(windows, show(windows)).toEqual([]);
      expect(trends, show(trends)).toEqual([]);
      const stored = await rowsOf(conn, `SELECT reason, count(*)::DOUBLE AS n FROM st.rejected_trades GROUP BY reason UNION ALL SELECT 'accepted', count(*)::DOUBLE FROM st.trades ORDER BY reason`);
      const expected = await rowsOf(conn, `SELECT verdict AS reason, count(*)::DOUBLE AS n FROM oracle_lines WHERE verdict <> 'blank' GROUP BY verdict ORDER BY reason`);
      expect(stored).toEqual(expected);
      expect(stored.map((r) => r.reason)).toEqual(['accepted', 'invalid', 'late', 'malformed']);
      const [f] = await rowsOf(conn, `SELECT count(*) FILTER (WHERE NOT is_final)::DOUBLE AS open, count(DISTINCT asset)::DOUBLE AS assets FROM st.trade_windows`);
      expect(f).toEqual({ open: 0, assets: 2 });
      // One job per partition, each finished, its position at the end of the partition.
      const progress = await rowsOf(conn, `SELECT job, finished FROM st.stream_progress WHERE source = '*' ORDER BY job`);
      const jobs = ['coincap_trade.rejected/0', 'coincap_trade.rejected/1', 'coincap_trade.rejected/2', 'coincap_trade/0', 'coincap_trade/1', 'coincap_trade/2'];
      expect(progress).toEqual(jobs.map((j) => ({ job: `g-now/${j}`, finished: true })));
    });
    // The same rows as `run` over the file (rejection details say "offset" instead of "line").
    await expectSameStores(REF, uninterrupted, 'process --available-now against run', 'SELECT reason, raw FROM {db}.rejected_trades');

    // Again: nothing new in the topic, nothing written, in every partition (an empty one too: it got
    // another empty batch on every run).
    const batchIds = async () => rowsOfStore(uninterrupted, `SELECT job, batch_id::DOUBLE AS b FROM stream_progress WHERE source = '*' ORDER BY job`);
    const before = await batchIds();
    const again = await finished(spawnCoinstream(processArgs(uninterrupted, 'g-now', '--available-now')));
    expect(again).toMatch(/already finished/);
    expect(await batchIds()).toEqual(before);
  }, 180_000);

  it('SIGKILL mid-stream (--max-offsets-per-trigger) and the same command again: equal to the uninterrupted result', async () => {
    const store = join(dir, 'killed.duckdb');
    const args = processArgs(store, 'g-kill', '--available-now', '--max-offsets-per-trigger', '300', '--trigger', '100ms');
    const killed = spawnCoinstream(args, DEBUG);
    const written = (out: string) => out.split('\n').filter((l) => l.includes('"msg":"batch written"')).length;
    await killed.waitFor('stderr', (out) => written(out) >= 6 || /"msg":"done: /.test(out), 120_000);
    killed.child.kill('SIGKILL');
    expect((await killed.exit).signal, 'the run ended before it was killed: make it slower').toBe('SIGKILL');
    const again = await finished(spawnCoinstream(args));
    expect(again).toMatch(/resuming job \\"g-kill\/coincap_trade\/\d\\" after batch/);
    await expectSameStores(uninterrupted, store, 'killed and restarted');
  }, 180_000);

  it('two members of one group share a MySQL store; the second joins mid-stream (a rebalance): the store equals the uninterrupted result', async () => {
    await withMysql(async (mysql, db) => {
      // Slow (20 records per partition per 100 ms), so that the second member joins while the first is mid-way.
      const args = ['process', '--brokers', cluster.brokers, '--group', 'g-two', '--sink', mysql.url(db), '--available-now', '--max-offsets-per-trigger', '20', '--trigger', '100ms'];
      const first = spawnCoinstream(args, DEBUG);
      const written = (out: string) => out.split('\n').filter((l) => l.includes('"msg":"batch written"')).length;
      await first.waitFor('stderr', (out) => written(out) >= 3, 60_000);
      const second = spawnCoinstream(args, DEBUG);
      const [a, b] = await Promise.all([finished(first), finished(second)]);
      const assignedTo = (err: string) => [...err.matchAll(/"msg":"group \\"g-two\\": assigned ([^"(]*)/g)].map((m) => m[1].trim());
      expect(assignedTo(a).length, `the first member was assigned twice (before and after the second joined): ${assignedTo(a)}`).toBeGreaterThanOrEqual(2);
      expect(assignedTo(b).join(' '), 'the second member got partitions').toMatch(/coincap_trade/);
      // On a difference, what each member did (assignments, resumes, fencing, crashes) says why.
      const story = (err: string) =>
        err
          .split('\n')
          .filter((l) => /"msg":"(group \\"|resuming|job \\"|coincap_trade[^ ]*: |the Kafka consumer stopped|done)/.test(l))
          .map((l) => l.slice(0, 400))
          .join('\n');
      try {
        await expectEqualToDuckDB(mysql, db, uninterrupted, 'two members, a rebalance mid-stream');
      } catch (err) {
        (err as Error).message += `\n--- first member ---\n${story(a)}\n--- second member ---\n${story(b)}`;
        throw err;
      }
    });
  }, 240_000);

  it('--available-now waits for the partitions of a member that died holding them: the survivor takes them over when its session ends', async () => {
    await withMysql(async (mysql, db) => {
      const args = (...more: string[]) => ['process', '--brokers', cluster.brokers, '--group', 'g-dead', '--sink', mysql.url(db), '--available-now', ...more];
      // The one that dies: slow (~37 s a partition), so that it still holds unread records once the survivor is in.
      const doomed = spawnCoinstream(args('--max-offsets-per-trigger', '10', '--trigger', '200ms'), DEBUG);
      await doomed.waitFor('stderr', (out) => out.includes('"msg":"batch written"'), 60_000);
      const survivor = spawnCoinstream(args(), DEBUG);
      // The survivor is in once it has been assigned partitions (its first try may fail: the mock answers a
      // SyncGroup during a rebalance with an error, and it joins again).
      await survivor.waitFor('stderr', (out) => /"msg":"group \\"g-dead\\": assigned coincap_trade/.test(out), 60_000);
      // SIGKILL: it leaves no goodbye, so the group counts it a member, holding its partitions, until its
      // session times out (10 s). The survivor's own partitions are done long before that.
      doomed.child.kill('SIGKILL');
      expect((await doomed.exit).signal, 'the first member finished before it was killed: make it slower').toBe('SIGKILL');
      const out = await finished(survivor);
      await expectEqualToDuckDB(mysql, db, uninterrupted, 'a member died holding partitions; the survivor took them over');
      expect(out, 'the survivor said what it waited for').toMatch(/waiting for coincap_trade/);
    });
  }, 240_000);

  it('a record written twice with the same (run, seq) headers is kept once and the copy rejected as duplicate', async () => {
    await cluster.createTopic('dups', 1);
    const trade = lines[0];
    for (let i = 0; i < 3; i++) produce(cluster.brokers, 'dups', [trade], ['coinstream-run=run-a', 'coinstream-seq=7']);
    produce(cluster.brokers, 'dups', [trade], ['coinstream-run=run-a', 'coinstream-seq=8']);
    const store = join(dir, 'dups.duckdb');
    await finished(spawnCoinstream(['process', '--brokers', cluster.brokers, '--group', 'g-dups', '--topic', 'dups', '--sink', `duckdb:${store}`, '--available-now']));
    const [r] = await queryRows(store, `SELECT (SELECT count(*) FROM trades)::DOUBLE AS trades, (SELECT count(*) FROM rejected_trades WHERE reason = 'duplicate')::DOUBLE AS dups, (SELECT min(detail) FROM rejected_trades) AS detail`, { readOnly: true });
    expect(r.trades).toBe(2);
    expect(r.dups).toBe(2);
    expect(String(r.detail)).toMatch(/run run-a, seq 7/);
  }, 120_000);

  it('a rejection that names the file its producer read (the last record a duplicate) keeps the partition\'s position: --available-now ends, a restart adds nothing', async () => {
    await cluster.createTopic('dups-last', 1);
    const headers = (seq: number) => ['coinstream-run=run-b', `coinstream-seq=${seq}`, 'coinstream-source=replay:orig.jsonl'];
    produce(cluster.brokers, 'dups-last', [lines[0]], headers(1));
    produce(cluster.brokers, 'dups-last', [lines[2]], headers(2));
    produce(cluster.brokers, 'dups-last', [lines[2]], headers(2)); // a retried produce, last in the partition
    const store = join(dir, 'dups-last.duckdb');
    const args = ['process', '--brokers', cluster.brokers, '--group', 'g-dups-last', '--topic', 'dups-last', '--no-dead-letter', '--sink', `duckdb:${store}`, '--available-now'];
    // Before, the duplicate's position went under "replay:orig.jsonl": the partition never looked done,
    // and --available-now waited for ever (this run would hit the test's timeout).
    await finished(spawnCoinstream(args));
    const state = async () => queryRows(store, `SELECT (SELECT count(*) FROM rejected_trades)::DOUBLE AS rejected, (SELECT list(source ORDER BY source) FROM stream_progress) AS sources, (SELECT any_value(source) FROM rejected_trades) AS named`, { readOnly: true });
    const [first] = await state();
    expect(first).toEqual({ rejected: 1, sources: ['*', 'kafka:dups-last/0'], named: 'replay:orig.jsonl' });
    const again = await finished(spawnCoinstream(args));
    expect(again).toMatch(/already finished/);
    expect((await state())[0]).toEqual(first);
  }, 120_000);

  it('--available-now --starting-offsets latest on a topic that holds records: reads nothing and exits (it waited for ever)', async () => {
    const store = join(dir, 'latest.duckdb');
    const err = await finished(spawnCoinstream(processArgs(store, 'g-latest', '--available-now', '--starting-offsets', 'latest')));
    expect(err).toMatch(/done: 0 trades aggregated/);
  }, 120_000);

  it('a trade topic that does not exist: exit 2 saying so, and the brokers are not made to create it', async () => {
    const store = join(dir, 'typo.duckdb');
    const run = spawnCoinstream(processArgs(store, 'g-typo', '--available-now', '--topic', 'coincap_trdae'));
    const { code } = await run.exit;
    expect(code, run.stderr()).toBe(2);
    expect(run.stderr()).toMatch(/topic "coincap_trdae" does not exist on the brokers; create it/);
    // Before: asking for its offsets made the (auto-creating) brokers create it and its dead-letter topic, exit 0.
    const describe = spawnCoinstream(['topics', 'describe', '--brokers', cluster.brokers, '--topic', 'coincap_trdae']);
    await describe.exit;
    expect(describe.stderr()).toMatch(/does not exist/);
  }, 120_000);
});
