import { copyFileSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger, silentLogger } from '../../src/core/logger.js';
import type { Trade } from '../../src/core/trade.js';
import type { TrendResult, WindowResult } from '../../src/engine/contract.js';
import type { OutputBatch } from '../../src/sinks/contract.js';
import { DuckDBSink } from '../../src/sinks/duckdb/duckdb-sink.js';
import { DuckDBStore } from '../../src/sinks/duckdb/duckdb-store.js';
import { openDuckDB, queryRows, withDuckDB } from '../../src/sinks/duckdb/open.js';
import { TradeBatchBuilder } from '../../src/sinks/trade-batch.js';
import { DUCKDB_SCHEMA } from '../../src/sinks/duckdb/schema.js';

const dir = mkdtempSync(join(tmpdir(), 'coinstream-duckdb-'));

function window(over: Partial<WindowResult>): WindowResult {
  return { asset: 'bitcoin', windowStart: 0, windowEnd: 60_000, trades: 1, totalVolume: 1, totalAmount: 100, averagePrice: 100, vwap: 100, open: 100, high: 100, low: 100, close: 100, buyVolume: 1, sellVolume: 0, isFinal: false, updatedAt: 5, ...over };
}

function trades(list: Partial<Trade>[]): ReturnType<TradeBatchBuilder['take']> {
  const b = new TradeBatchBuilder(2);
  for (const t of list) b.push({ exchange: 'kraken', base: 'bitcoin', quote: 'united-states-dollar', direction: 'buy', price: 1, volume: 1, timestamp: 1000, priceUsd: 1, ...t });
  return b.take();
}

function batch(over: Partial<OutputBatch>): OutputBatch {
  return { batchId: 0, windows: [], trends: [], rejected: [], prices: [], trades: trades([]), watermark: 0, final: false, ...over };
}

const query = queryRows;

describe('DuckDB store', () => {
  for (const via of ['the store', 'the worker'] as const) {
    it(`upserts windows by key across batches and keeps the last version (through ${via})`, async () => {
      const path = join(dir, `upsert-${via.replace(' ', '-')}.duckdb`);
      const store = via === 'the store' ? new DuckDBStore(path, silentLogger) : new DuckDBSink(path, silentLogger);
      await store.open();
      await store.write(batch({ windows: [window({ trades: 1 }), window({ windowStart: 60_000, windowEnd: 120_000 })] }));
      // New rows around one that replaces a stored row: each goes its own way, none is lost or swapped.
      const next = [
        window({ windowStart: 120_000, windowEnd: 180_000, trades: 3, vwap: 99.5 }),
        window({ trades: 7, vwap: 101.25, isFinal: true, updatedAt: 9 }),
        window({ windowStart: 180_000, windowEnd: 240_000, trades: 4, isFinal: true, high: 104 }),
      ];
      await store.write(batch({ batchId: 1, windows: next }));
      await store.close();
      const rows = await query(path, 'SELECT epoch_ms(window_start)::DOUBLE AS s, trades, vwap, high, is_final, epoch_ms(updated_at)::DOUBLE AS u FROM trade_windows ORDER BY s');
      expect(rows).toEqual([
        { s: 0, trades: 7n, vwap: 101.25, high: 100, is_final: true, u: 9 },
        { s: 60_000, trades: 1n, vwap: 100, high: 100, is_final: false, u: 5 },
        { s: 120_000, trades: 3n, vwap: 99.5, high: 100, is_final: false, u: 5 },
        { s: 180_000, trades: 4n, vwap: 100, high: 104, is_final: true, u: 5 },
      ]);
    });
  }

  for (const via of ['the store', 'the worker'] as const) {
    it(`takes a final row written again in the same process (a re-sent batch) without failing on its key (through ${via})`, async () => {
      const path = join(dir, `twice-${via.replace(' ', '-')}.duckdb`);
      const store = via === 'the store' ? new DuckDBStore(path, silentLogger) : new DuckDBSink(path, silentLogger);
      await store.open();
      await store.write(batch({ windows: [window({ isFinal: true, trades: 2 }), window({ asset: 'ethereum', windowStart: 60_000, windowEnd: 120_000, isFinal: true })] }));
      // The same final bitcoin row again, and an older window of ethereum that ends before its stored
      // one: both may be in the store (ethereum's later end says nothing about bitcoin's rows).
      await store.write(batch({ batchId: 1, windows: [window({ isFinal: true, trades: 2, updatedAt: 7 }), window({ asset: 'ethereum', isFinal: true, trades: 5 })] }));
      await store.close();
      const rows = await query(path, 'SELECT asset, epoch_ms(window_start)::DOUBLE AS s, trades, epoch_ms(updated_at)::DOUBLE AS u FROM trade_windows ORDER BY asset, s');
      expect(rows).toEqual([
        { asset: 'bitcoin', s: 0, trades: 2n, u: 7 },
        { asset: 'ethereum', s: 0, trades: 5n, u: 5 },
        { asset: 'ethereum', s: 60_000, trades: 1n, u: 5 },
      ]);
    });
  }

  it('replaces rows stored by an earlier run, final or not, instead of failing on their keys', async () => {
    const path = join(dir, 'rerun.duckdb');
    const trend = (over: Partial<TrendResult>): TrendResult => ({ asset: 'bitcoin', windowStart: 0, windowEnd: 60_000, vwap: 100, prevVwap: null, trend: null, avgPrice6m: 100, change6mPct: 0, windows6m: 1, isFinal: true, ...over });
    let store = new DuckDBStore(path, silentLogger);
    await store.open();
    await store.write(batch({ windows: [window({ isFinal: true }), window({ windowStart: 60_000, windowEnd: 120_000 })], trends: [trend({})] }));
    await store.close();
    // The same data again (a second replay), then the open window becoming final, then a new window.
    store = new DuckDBStore(path, silentLogger);
    await store.open();
    await store.write(batch({ windows: [window({ isFinal: true, trades: 3 })], trends: [trend({ vwap: 99 })] }));
    await store.write(batch({ batchId: 1, windows: [window({ windowStart: 60_000, windowEnd: 120_000, isFinal: true, trades: 4 }), window({ windowStart: 120_000, windowEnd: 180_000 })] }));
    await store.write(batch({ batchId: 2, windows: [window({ windowStart: 120_000, windowEnd: 180_000, trades: 5, isFinal: true })] }));
    await store.close();
    expect(await query(path, 'SELECT epoch_ms(window_start)::DOUBLE AS s, trades, is_final FROM trade_windows ORDER BY s')).toEqual([
      { s: 0, trades: 3n, is_final: true },
      { s: 60_000, trades: 4n, is_final: true },
      { s: 120_000, trades: 5n, is_final: true },
    ]);
    expect(await query(path, 'SELECT vwap FROM price_trends')).toEqual([{ vwap: 99 }]);
  });

  it('keeps one row per key without a PRIMARY KEY, and writes a store made with one (an earlier version) the same way', async () => {
    const trend = (over: Partial<TrendResult>): TrendResult => ({ asset: 'bitcoin', windowStart: 0, windowEnd: 60_000, vwap: 100, prevVwap: null, trend: null, avgPrice6m: 100, change6mPct: 0, windows6m: 1, isFinal: false, ...over });
    const keyed = `PRIMARY KEY (asset, window_start, window_end)`;
    for (const made of ['new', 'with keys'] as const) {
      const path = join(dir, `keys-${made.replace(' ', '-')}.duckdb`);
      if (made === 'with keys') {
        // The tables as earlier versions made them: the same columns, and the key as an index.
        await withDuckDB(path, (conn) => conn.run(DUCKDB_SCHEMA.replace(/(updated_at +TIMESTAMP NOT NULL)\n\);/, `$1,\n  ${keyed}\n);`).replace(/(is_final +BOOLEAN +NOT NULL)\n\);\nCREATE TABLE IF NOT EXISTS rejected_trades/, `$1,\n  ${keyed}\n);\nCREATE TABLE IF NOT EXISTS rejected_trades`)));
        expect(await query(path, "SELECT count(*)::INT AS n FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' AND table_name IN ('trade_windows', 'price_trends')")).toEqual([{ n: 2 }]);
      }
      let store = new DuckDBStore(path, silentLogger);
      await store.open();
      // The same two windows of two assets, written again and again: open, updated in a batch, final;
      // then the final rows once more after a reopen (a restart that re-sends its last batch).
      for (let b = 0; b < 3; b++) {
        const rows = ['bitcoin', 'ethereum'].flatMap((asset) => [0, 60_000].map((start) => ({ asset, windowStart: start, windowEnd: start + 60_000, trades: b + 1, isFinal: b === 2 })));
        await store.write(batch({ batchId: b, windows: rows.map(window), trends: rows.map(({ trades, ...r }) => trend({ ...r, vwap: 100 + trades })) }));
      }
      await store.close();
      store = new DuckDBStore(path, silentLogger);
      await store.open();
      await store.write(batch({ batchId: 3, windows: [window({ windowStart: 60_000, windowEnd: 120_000, trades: 9, isFinal: true })], trends: [trend({ windowStart: 60_000, windowEnd: 120_000, vwap: 109, isFinal: true })] }));
      await store.close();
      expect(await query(path, 'SELECT asset, epoch_ms(window_start)::DOUBLE AS s, trades, is_final FROM trade_windows ORDER BY asset, s')).toEqual([
        { asset: 'bitcoin', s: 0, trades: 3n, is_final: true },
        { asset: 'bitcoin', s: 60_000, trades: 9n, is_final: true },
        { asset: 'ethereum', s: 0, trades: 3n, is_final: true },
        { asset: 'ethereum', s: 60_000, trades: 3n, is_final: true },
      ]);
      expect(await query(path, 'SELECT asset, epoch_ms(window_start)::DOUBLE AS s, vwap FROM price_trends ORDER BY asset, s')).toEqual([
        { asset: 'bitcoin', s: 0, vwap: 103 },
        { asset: 'bitcoin', s: 60_000, vwap: 109 },
        { asset: 'ethereum', s: 0, vwap: 103 },
        { asset: 'ethereum', s: 60_000, vwap: 103 },
      ]);
    }
  });

  it('archives trades with their names across reopened stores, in arrival order', async () => {
    const path = join(dir, 'names.duckdb');
    let store = new DuckDBStore(path, silentLogger);
    await store.open();
    await store.write(batch({ trades: trades([{ base: 'bitcoin', tradeId: 'a1', receivedAt: 5000 }, { base: 'ethereum', direction: 'sell' }]) }));
    await store.close();
    // A new process: the batch numbers its names from 0 again; the store must map them to its own ids.
    store = new DuckDBStore(path, silentLogger);
    await store.open();
    await store.write(batch({ trades: trades([{ base: 'solana', exchange: 'binance', quote: 'tether' }, { base: 'bitcoin', timestamp: 2000 }]) }));
    await store.close();
    const rows = await query(path, 'SELECT exchange, base, quote, direction, epoch_ms("timestamp")::DOUBLE AS t, trade_id, epoch_ms(received_at)::DOUBLE AS r FROM trades');
    expect(rows).toEqual([
      { exchange: 'kraken', base: 'bitcoin', quote: 'united-states-dollar', direction: 'buy', t: 1000, trade_id: 'a1', r: 5000 },
      { exchange: 'kraken', base: 'ethereum', quote: 'united-states-dollar', direction: 'sell', t: 1000, trade_id: null, r: null },
      { exchange: 'binance', base: 'solana', quote: 'tether', direction: 'buy', t: 1000, trade_id: null, r: null },
      { exchange: 'kraken', base: 'bitcoin', quote: 'united-states-dollar', direction: 'buy', t: 2000, trade_id: null, r: null },
    ]);
  });

  it('refuses a store whose trade log has the earlier layout, and leaves it as it was', async () => {
    const path = join(dir, 'old-layout.duckdb');
    await withDuckDB(path, (conn) => conn.run('CREATE TABLE trade_log (exchange_id UINTEGER, base_id UINTEGER)'));
    await expect(new DuckDBStore(path, silentLogger).open()).rejects.toThrow(/earlier coinstream.*move it away or use another --sink duckdb:PATH/);
    expect(await query(path, "SELECT table_name FROM duckdb_tables() ORDER BY 1")).toEqual([{ table_name: 'trade_log' }]);
  });

  it('writes a batch all or nothing', async () => {
    const path = join(dir, 'atomic.duckdb');
    const store = new DuckDBStore(path, silentLogger);
    await store.open();
    await store.write(batch({ windows: [window({})] }));
    // The trend row breaks a NOT NULL constraint after the windows were upserted: nothing of the
    // batch may remain, neither the windows before it nor the rejects and trades after it.
    const brokenTrend = { asset: 'bitcoin', windowStart: 0, windowEnd: 60_000, vwap: 1, prevVwap: null, trend: null, avgPrice6m: null as unknown as number, change6mPct: 0, windows6m: 1, isFinal: false };
    const bad = batch({ batchId: 1, windows: [window({ windowStart: 120_000, windowEnd: 180_000 }), window({ trades: 5 })], trends: [brokenTrend], trades: trades([{ base: 'dogecoin' }]), rejected: [{ receivedAt: 1, source: 's', reason: 'invalid', detail: 'd', raw: 'r' }] });
    await expect(store.write(bad)).rejects.toThrow(/writing batch 1 failed/);
    await store.write(batch({ batchId: 2, trades: trades([{ base: 'cardano' }]) }));
    await store.close();
    expect(await query(path, 'SELECT epoch_ms(window_start)::DOUBLE AS s, trades FROM trade_windows')).toEqual([{ s: 0, trades: 1n }]);
    expect(await query(path, 'SELECT base FROM trades')).toEqual([{ base: 'cardano' }]);
    expect(await query(path, 'SELECT count(*) AS n FROM rejected_trades')).toEqual([{ n: 0n }]);
  });

  it('runs the same store in a worker thread behind DuckDBSink', async () => {
    const path = join(dir, 'worker.duckdb');
    const sink = new DuckDBSink(path, silentLogger);
    await sink.open();
    await sink.write(batch({ windows: [window({ asset: 'ethereum' })], trades: trades([{ base: 'ethereum' }]) }));
    await sink.close();
    expect(await query(path, 'SELECT asset FROM trade_windows')).toEqual([{ asset: 'ethereum' }]);
    expect(await query(path, 'SELECT base FROM trades')).toEqual([{ base: 'ethereum' }]);
  });

  it.runIf(process.platform === 'linux')('runs the worker at a lower priority than the pipeline thread', async () => {
    const niceByThread = () =>
      new Map(readdirSync('/proc/self/task').map((tid) => [tid, Number(readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ')[16])]));
    const before = niceByThread();
    const sink = new DuckDBSink(join(dir, 'nice.duckdb'), silentLogger);
    await sink.open();
    const after = niceByThread();
    await sink.close();
    const lowered = [...after].filter(([tid, nice]) => nice === 10 && before.get(tid) !== 10);
    expect(lowered).toHaveLength(1); // the worker, and only it
    const self = readlinkSync('/proc/thread-self').split('/').pop()!;
    expect(after.get(self)).toBe(before.get(self));
  });

  it('starts empty only when its file is not there, and resumes from the file it made', async () => {
    const path = join(dir, 'new.duckdb');
    const sink = new DuckDBSink(path, silentLogger);
    expect(sink.startsEmpty()).toBe(true);
    await sink.open();
    await sink.write(batch({ windows: [window({})], progress: { job: 'run', positions: {}, watermark: 0, settings: '{}', engineState: '{}', finished: false } }));
    await sink.close();
    const again = new DuckDBSink(path, silentLogger);
    expect(again.startsEmpty(), 'the file is there now').toBe(false);
    await again.open();
    expect(await again.readProgress('run')).toMatchObject({ batchId: 0 });
    await again.close();
  });

  it('makes again a store whose making was cut short (an empty file, part of DuckDB\'s headers), and leaves any other file alone', async () => {
    // A real store's first bytes: what a process killed while DuckDB wrote its headers leaves.
    const whole = join(dir, 'whole.duckdb');
    const first = new DuckDBStore(whole, silentLogger);
    await first.open();
    await first.close();
    const headerStart = readFileSync(whole).subarray(0, 4096);
    for (const [name, content] of [['empty', Buffer.alloc(0)], ['part-header', headerStart]] as const) {
      const path = join(dir, `cut-short-${name}.duckdb`);
      writeFileSync(path, content);
      const store = new DuckDBStore(path, silentLogger);
      await store.open();
      await store.write(batch({ windows: [window({})] }));
      await store.close();
      const [row] = await queryRows(path, 'SELECT count(*)::DOUBLE AS n FROM trade_windows', { readOnly: true });
      expect(row.n, `${name}: a working store`).toBe(1);
    }
    // A small file that is not the start of a DuckDB file is not ours to remove.
    const foreign = join(dir, 'notes.duckdb');
    writeFileSync(foreign, 'my notes, not a database\n');
    await expect(new DuckDBStore(foreign, silentLogger).open()).rejects.toThrow(/notes.duckdb is not a DuckDB store \(it does not start like one\)/);
    expect(readFileSync(foreign, 'utf8')).toBe('my notes, not a database\n');
  });

  it('looks into a store whose tables are only in its WAL (a file of bare headers), not only into bigger files', async () => {
    // A crash before DuckDB's first checkpoint leaves a file of headers and a WAL that holds the tables.
    // The writer skips the checks for a file DuckDB has just made; this one must not pass for one.
    const live = join(dir, 'wal-only-live.duckdb');
    const { instance, conn } = await openDuckDB(live, { checkpointThreshold: '1GB' });
    await conn.run('CREATE TABLE trade_windows (a INTEGER); INSERT INTO trade_windows VALUES (1)');
    const crashed = join(dir, 'wal-only.duckdb');
    copyFileSync(live, crashed);
    copyFileSync(`${live}.wal`, `${crashed}.wal`);
    conn.closeSync();
    instance.closeSync();
    expect(readFileSync(crashed).length).toBe(3 * 4096);
    await expect(new DuckDBStore(crashed, silentLogger).open()).rejects.toThrow(/is not a coinstream store: its table trade_windows has the columns \(a INTEGER\)/);
  });

  it("the worker's log lines come out of the main thread's logger, at its level (the worker loads no pino)", async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = (level: string) => createLogger({ level, format: 'json', output: { write: (line) => lines.push(JSON.parse(line)) } });
    for (const level of ['info', 'error']) {
      lines.length = 0;
      const path = join(dir, `log-${level}.duckdb`);
      writeFileSync(path, ''); // what a kill leaves while DuckDB makes the file: the worker warns, and makes it again
      const sink = new DuckDBSink(path, logger(level));
      await sink.open();
      await sink.close();
      const fromWorker = lines.filter((l) => l.path === path).map((l) => [l.level, l.msg]);
      expect(fromWorker, level).toEqual(
        level === 'info'
          ? [[40, `${path} is a store whose making was cut short (0 bytes, DuckDB's headers not whole): removed, and made again`], [30, 'duckdb store open']]
          : [],
      );
    }
  });

  it('refuses to write a store that another process made, with a job in it, after this one found no file', async () => {
    const made = join(dir, 'made-elsewhere.duckdb');
    const first = new DuckDBStore(made, silentLogger);
    await first.open();
    await first.write(batch({ windows: [window({})], progress: { job: 'run', positions: {}, watermark: 0, settings: '{}', engineState: '{}', finished: false } }));
    await first.close();
    const path = join(dir, 'made-meanwhile.duckdb');
    const sink = new DuckDBSink(path, silentLogger);
    expect(sink.startsEmpty(), 'no file when the sink was made').toBe(true);
    // Another process's store appears at the path. The sink's worker is still starting (tens of ms)
    // while this copy takes well under one; and had the worker begun making the file, its link would
    // find this one there and open it all the same.
    copyFileSync(made, path);
    await expect(sink.open()).rejects.toThrow(/was created by another process while this run was starting, and holds results; run again to resume/);
    // Nothing was changed, and a store opened the usual way reads the job.
    const again = new DuckDBSink(path, silentLogger);
    expect(again.startsEmpty()).toBe(false);
    await again.open();
    expect(await again.readProgress('run')).toMatchObject({ batchId: 0 });
    await again.close();
  });

  it('says what to do when another process holds the file', async () => {
    const path = join(dir, 'locked.duckdb');
    const { instance, conn } = await openDuckDB(path);
    try {
      const { execFileSync } = await import('node:child_process');
      let stderr = '';
      try {
        execFileSync('node', ['bin/coinstream.js', 'query', '--store', `duckdb:${path}`], { stdio: 'pipe' });
      } catch (err) {
        stderr = String((err as { stderr: Buffer }).stderr);
      }
      expect(stderr).toMatch(/is in use by another process/);
    } finally {
      conn.closeSync();
      instance.closeSync();
    }
  });
});

describe('two DuckDB sinks in one run', () => {
  it('both archive every trade (the batch is shared with each worker, not handed over)', async () => {
    const a = join(dir, 'twin-a.duckdb');
    const b = join(dir, 'twin-b.duckdb');
    const sinks = [new DuckDBSink(a, silentLogger), new DuckDBSink(b, silentLogger)];
    for (const s of sinks) await s.open();
    const one = batch({ trades: trades([{ base: 'bitcoin' }, { base: 'ethereum' }]) });
    for (const s of sinks) await s.write(one);
    for (const s of sinks) await s.close();
    for (const path of [a, b]) expect(await query(path, 'SELECT base FROM trades')).toEqual([{ base: 'bitcoin' }, { base: 'ethereum' }]);
  });
});
