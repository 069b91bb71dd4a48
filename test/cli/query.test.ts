// `coinstream query --store SPEC` and the StoreReader behind it, for every store kind: one run writes
// the Kraken hour (plus a malformed, an invalid and a late line, so that rejected counts show) to a
// DuckDB file, a Delta directory, a fresh MariaDB database and a fresh PostgreSQL database at once;
// then all four must read back the same. The SQL servers (MariaDB 127.0.0.1:3306 root, PostgreSQL 127.0.0.1:5432
// postgres, as in test/sinks/sql.test.ts): a server that is not reachable skips with a printed
// reason, or fails when COINSTREAM_REQUIRE_SERVICES=1 (CI).
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import type { WindowResult } from '../../src/engine/contract.js';
import type { StoreReader, TradeBatch } from '../../src/sinks/contract.js';
import { createDeltaSinks } from '../../src/sinks/delta/delta-sink.js';
import { readDeltaTable } from '../../src/sinks/delta/reader.js';
import { openStoreReader } from '../../src/sinks/read-store.js';
import { freePort } from '../helpers/process.js';
import { PEERS } from '../sinks/sql-peers.js';

const REQUIRE = process.env.COINSTREAM_REQUIRE_SERVICES === '1';
const KRAKEN = 'data/kraken-btcusd-2019-07-01.coincap.jsonl';
const dir = mkdtempSync(join(tmpdir(), 'coinstream-query-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function coinstream(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', ['bin/coinstream.js', ...args], { env: { ...process.env, COINSTREAM_LOG_FORMAT: 'json' }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('query --store: specs it cannot read', () => {
  it('an unreachable server is one line, exit 1, password masked', async () => {
    const port = await freePort();
    for (const spec of [`mysql://root:s3cret@127.0.0.1:${port}/x`, `postgres://postgres:s3cret@127.0.0.1:${port}/x`]) {
      const r = await coinstream(['query', '--store', spec]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/:\*\*\*@127\.0\.0\.1:\d+\/x: cannot reach the server: .*ECONNREFUSED/);
      expect(r.stderr).not.toContain('s3cret');
    }
  });

  it.each([
    ['delta:', /--store delta needs a directory/],
    ['mariadb://root:s3cret@h/x', /"mariadb:\.\.\." is not a store kind coinstream can read; a store is one of: duckdb:PATH/],
    ['mysql://root:s3cret@127.0.0.1:3306', /--store mysql: no database/],
    [`duckdb:${join(dir, 'nope.duckdb')}`, /no store at .*nope\.duckdb; run `coinstream run` first/],
  ])('%s is a one-line usage error', async (spec, message) => {
    const r = await coinstream(['query', '--store', spec]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toContain('s3cret');
  });

  it('a directory without Delta tables (missing, empty, or other folders only) is a one-line usage error', async () => {
    const empty = join(dir, 'empty-delta');
    mkdirSync(join(empty, 'not_a_table', '_delta_log'), { recursive: true });
    mkdirSync(join(empty, 'trade_windows', '_delta_log'), { recursive: true }); // created, not committed yet
    for (const target of [join(dir, 'no-such-dir'), empty]) {
      const r = await coinstream(['query', '--store', `delta:${target}`]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(`no Delta tables of coinstream in ${target}; run \`coinstream run --sink delta:${target}\` first`);
    }
  });
});

describe('query --store delta:DIR', () => {
  it('a key written twice (a table from before finished jobs kept their final windows) reads as its newest row', async () => {
    // Coinstream before 2026-11-26 rewrote a finished job's final windows when the job read on, so a
    // Delta table of then may hold a key twice. Written here batch by batch, as those runs did.
    const delta = join(dir, 'twice-delta');
    const T = Date.UTC(2019, 6, 1, 0, 14);
    const window = (asset: string, trades: number, vwap: number): WindowResult => ({
      asset, windowStart: T, windowEnd: T + 60_000, trades, totalVolume: trades, totalAmount: trades * vwap, averagePrice: vwap, vwap,
      open: vwap, high: vwap, low: vwap, close: vwap, buyVolume: trades, sellVolume: 0, isFinal: true, updatedAt: T + 60_000,
    });
    const noTrades: TradeBatch = { length: 0, keys: [], key: new Uint32Array(0), price: new Float64Array(0), volume: new Float64Array(0), timestamp: new Float64Array(0), priceUsd: new Float64Array(0), receivedAt: new Float64Array(0), tradeId: null };
    const sinks = createDeltaSinks(`delta:${delta}`, silentLogger);
    for (const sink of sinks) await sink.open();
    const write = async (batchId: number, windows: WindowResult[]) => {
      for (const sink of sinks) await sink.write({ batchId, windows, trends: [], rejected: [], prices: [], trades: noTrades, watermark: Infinity, final: batchId === 1 });
    };
    await write(0, [window('bitcoin', 126, 10800), window('ethereum', 3, 300)]);
    // A reader opened meanwhile (the dashboard's) sees what is written after it opened: it read its
    // first copy for ever before.
    const live = await openStoreReader(`delta:${delta}`);
    const seen = async () => (await live.windowsBetween({ from: -Infinity, to: Infinity })).map((w) => [w.asset, w.trades]);
    try {
      expect(await seen()).toEqual([['bitcoin', 126], ['ethereum', 3]]);
      await write(1, [window('bitcoin', 180, 10801)]);
      expect(await seen()).toEqual([['bitcoin', 180], ['ethereum', 3]]);
    } finally {
      await live.close();
    }
    for (const sink of sinks) await sink.close();
    const rows = await readDeltaTable(join(delta, 'trade_windows'), { columns: ['asset', 'trades'] });
    expect(rows.map((r) => [r.asset, Number(r.trades)])).toEqual([['bitcoin', 126], ['ethereum', 3], ['bitcoin', 180]]);

    const reader = await openStoreReader(`delta:${delta}`);
    try {
      const windows = await reader.windowsBetween({ from: -Infinity, to: Infinity });
      expect(windows.map((w) => [w.asset, w.trades, w.vwap])).toEqual([['bitcoin', 180, 10801], ['ethereum', 3, 300]]);
    } finally {
      await reader.close();
    }
    const r = await coinstream(['query', '--store', `delta:${delta}`, '--last', '2h']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\n2 window\(s\)\n$/);
    expect(r.stdout).toMatch(/bitcoin .* 180 /);
  }, 60_000);

  it('a directory whose trade_windows is another application\'s Delta table: one line saying so, not a SQL error', async () => {
    const foreign = join(dir, 'foreign-delta');
    cpSync('test/fixtures/delta/delta-rs/simple_table', join(foreign, 'trade_windows'), { recursive: true });
    const r = await coinstream(['query', '--store', `delta:${foreign}`]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      `coinstream: Delta table ${join(foreign, 'trade_windows')} is not coinstream's: it has the columns (id), without asset, window_start, window_end, trades, total_volume, total_amount, average_price, vwap, open, high, low, close, buy_volume, sell_volume, is_final, updated_at; point --store at a directory coinstream wrote`,
    ]);
  });
});

const [mysqlPeer, postgresPeer] = PEERS;
const unreachable = (await Promise.all([mysqlPeer.unreachable(), postgresPeer.unreachable()])).filter((u) => u !== null).join('; ') || null;
if (unreachable && !REQUIRE) console.warn(`skipping the query tests on MySQL and PostgreSQL: ${unreachable}`);

describe.skipIf(unreachable !== null && !REQUIRE)('query --store on DuckDB, MySQL, PostgreSQL and Delta', () => {
  const dbs: { peer: (typeof PEERS)[number]; db: string }[] = [];
  const stores: Record<'duckdb' | 'mysql' | 'postgres' | 'delta', string> = { duckdb: '', mysql: '', postgres: '', delta: '' };

  beforeAll(async () => {
    if (unreachable) throw new Error(`the SQL servers are needed (COINSTREAM_REQUIRE_SERVICES=1) but ${unreachable}`);
    const input = join(dir, 'kraken-plus-rejects.jsonl');
    const first = readFileSync(KRAKEN, 'utf8').split('\n')[0];
    writeFileSync(input, `${readFileSync(KRAKEN, 'utf8')}not json\n{"exchange":"kraken"}\n${first}\n`);
    for (const peer of [mysqlPeer, postgresPeer]) dbs.push({ peer, db: await peer.create() });
    stores.duckdb = `duckdb:${join(dir, 'all.duckdb')}`;
    stores.mysql = mysqlPeer.url(dbs[0].db);
    stores.postgres = postgresPeer.url(dbs[1].db);
    stores.delta = `delta:${join(dir, 'delta')}`;
    const run = await coinstream(['run', '--source', `replay:${input}`, '--speed', 'max', '--no-dashboard', '--sink', stores.duckdb, '--sink', stores.mysql, '--sink', stores.postgres, '--sink', stores.delta]);
    expect(run.code, run.stderr.slice(-4000)).toBe(0);
    expect(run.stderr).toMatch(/done: 2672 trades aggregated.*3 rejected/);
  }, 60_000);

  afterAll(async () => {
    for (const { peer, db } of dbs) await peer.drop(db);
  });

  it('prints the same table and rejected counts, byte for byte, from every store', async () => {
    const outs: Record<string, string> = {};
    for (const [kind, spec] of Object.entries(stores)) {
      const r = await coinstream(['query', '--store', spec, '--asset', 'bitcoin', '--last', '10m']);
      expect(r.code, `${kind}: ${r.stderr}`).toBe(0);
      expect(r.stderr).toBe('');
      outs[kind] = r.stdout;
    }
    const rows = outs.duckdb.split('\n').filter((l) => l.startsWith('| bitcoin'));
    expect(rows.map((l) => l.split('|')[2].trim())).toEqual(Array.from({ length: 10 }, (_, i) => `2019-07-01 00:${50 + i}:00.000`));
    expect(outs.duckdb).toMatch(/\n10 window\(s\); rejected trades in store: invalid 1, late 1, malformed 1\n$/);
    expect(outs.mysql).toBe(outs.duckdb);
    expect(outs.postgres).toBe(outs.duckdb);
    expect(outs.delta).toBe(outs.duckdb);
  });

  it('StoreReader: windowsBetween, trends and progress agree across the four stores', async () => {
    const readers: StoreReader[] = [];
    try {
      for (const spec of Object.values(stores)) readers.push(await openStoreReader(spec));
      const from = Date.UTC(2019, 6, 1, 0, 10);
      const to = Date.UTC(2019, 6, 1, 0, 20);
      const [duck, ...others] = await Promise.all(
        readers.map(async (r) => ({
          name: r.name,
          windows: await r.windowsBetween({ asset: 'bitcoin', from, to }),
          trends: await r.trends({ from, to }),
          limited: await r.windowsBetween({ from: -Infinity, to: Infinity, limit: 3 }),
          rejected: await r.rejectedCounts(),
          progress: await r.progress('run'),
          none: await r.progress('no-such-job'),
        })),
      );
      // 1-minute windows inside [00:10, 00:20): ten of them, with a trend row each.
      expect(duck.windows.map((w) => w.windowStart)).toEqual(Array.from({ length: 10 }, (_, i) => from + i * 60_000));
      expect(duck.trends).toHaveLength(10);
      expect(duck.limited.map((w) => w.windowStart)).toEqual([0, 1, 2].map((i) => Date.UTC(2019, 6, 1, 0, i)));
      expect(duck.rejected).toEqual({ invalid: 1, late: 1, malformed: 1 });
      expect(duck.progress).toMatchObject({ job: 'run', finished: true, watermark: Infinity });
      expect(duck.none).toBeNull();
      for (const other of others) {
        expectClose(other.windows, duck.windows, `${other.name} windows`);
        expectClose(other.trends, duck.trends, `${other.name} trends`);
        expectClose(other.limited, duck.limited, `${other.name} limited`);
        expect(other.rejected, other.name).toEqual(duck.rejected);
        const pick = (p: typeof duck.progress) => p && { batchId: p.batchId, finished: p.finished, positions: p.positions, watermark: p.watermark, settings: p.settings, engineState: p.engineState };
        expect(pick(other.progress), other.name).toEqual(pick(duck.progress));
        expect(other.none).toBeNull();
      }
    } finally {
      for (const r of readers) await r.close();
    }
  });
});

/** Same rows, same keys; numbers within 1e-9 relative, everything else equal. */
function expectClose(actual: object[], expected: object[], what: string): void {
  expect(actual.length, what).toBe(expected.length);
  actual.forEach((row, i) => {
    const want = expected[i] as Record<string, unknown>;
    const got = row as Record<string, unknown>;
    expect(Object.keys(got).sort(), what).toEqual(Object.keys(want).sort());
    for (const [k, v] of Object.entries(want)) {
      const g = got[k];
      if (typeof v === 'number' && typeof g === 'number' && v !== g) {
        expect(Math.abs(g - v) / Math.max(Math.abs(v), Number.MIN_VALUE), `${what} row ${i} ${k}: ${g} vs ${v}`).toBeLessThanOrEqual(1e-9);
      } else {
        expect(g, `${what} row ${i} ${k}`).toEqual(v);
      }
    }
  });
}
