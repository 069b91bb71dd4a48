// `coinstream optimize delta:DIR [--vacuum]`: compaction keeps every row and every old version readable,
// commits with dataChange=false, gives way to a concurrent writer that removed its files, and VACUUM
// deletes exactly the files no version within the retention needs.
//
// The tables are written in-process by the Delta sink itself (one commit per fake batch): 130 batches
// of rejected trades over four days, partitioned by date (520 small files), and 60 batches of windows
// in an unpartitioned table.
import { cpSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, utimesSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RejectedTrade } from '../../src/core/trade.js';
import { silentLogger } from '../../src/core/logger.js';
import type { WindowResult } from '../../src/engine/contract.js';
import type { OutputBatch, TradeBatch } from '../../src/sinks/contract.js';
import { withDuckDB } from '../../src/sinks/duckdb/open.js';
import { createDeltaSinks } from '../../src/sinks/delta/delta-sink.js';
import { encodeDeltaPath } from '../../src/sinks/delta/files.js';
import { findDeltaTables, optimizeTable, vacuumTable, type DeltaTableRef } from '../../src/sinks/delta/optimize.js';
import { ParquetWriter } from '../../src/sinks/delta/parquet.js';
import { DELTA_TABLES, rowsOf } from '../../src/sinks/delta/tables.js';
import { dataFilePath, readCommit, readDeltaLog, readDeltaTable } from '../../src/sinks/delta/reader.js';
import { DeltaTableLog } from '../../src/sinks/delta/table-log.js';
import { killAll, spawnCoinstream } from '../helpers/process.js';

const root = mkdtempSync(join(tmpdir(), 'coinstream-optimize-'));
const TEMPLATE = join(root, 'template');
const REJECTED_BATCHES = 130;
const DAYS = 4;
const WINDOW_BATCHES = 60;
const DAY = 86_400_000;
const T0 = Date.UTC(2019, 6, 1, 12);

let files: ParquetWriter;

function batch(batchId: number, rejected: RejectedTrade[], windows: WindowResult[]): OutputBatch {
  // Only the rejected trades and windows are written here (no --delta-trades): the trades are never read.
  const trades = { length: 0 } as unknown as TradeBatch;
  return { batchId, windows, trends: [], rejected, prices: [], trades, watermark: T0 + batchId * 60_000, final: false };
}

function rejectedRows(b: number): RejectedTrade[] {
  // Two rows per day, on DAYS days: one file per day per batch.
  return Array.from({ length: DAYS }, (_, day) => day).flatMap((day) => [0, 1].map((k) => ({ receivedAt: T0 + day * DAY + b * 1000 + k, source: 'replay:test', reason: 'invalid' as const, detail: `b${b} d${day} k${k}`, raw: `{"n":${(b * DAYS + day) * 2 + k}}` })));
}

function windowRow(b: number): WindowResult {
  const windowStart = T0 + b * 60_000;
  return { asset: b % 3 === 0 ? 'ethereum' : 'bitcoin', windowStart, windowEnd: windowStart + 60_000, trades: b + 1, totalVolume: b / 7, totalAmount: b * 3.5, averagePrice: 10_000 + b, vwap: 10_000.5 + b, open: 1, high: 2, low: 0.5, close: 1.5, buyVolume: b / 14, sellVolume: b / 14, isFinal: true, updatedAt: windowStart + 61_000 };
}

/**
 * Writes the template store with the Delta sink: rejected_trades by date, trade_windows unpartitioned.
 * No run writes a store so (every table of a run has one --delta-partition, and a run checks all of them
 * first), so the date-partitioned table is written in a directory of its own and moved in.
 */
async function buildTemplate(): Promise<void> {
  const byDate = join(root, 'template-by-date');
  const [rejected] = createDeltaSinks(`delta:${byDate}`, silentLogger, { partition: 'date' }).filter((s) => s.name.endsWith('rejected_trades'));
  const [windows] = createDeltaSinks(`delta:${TEMPLATE}`, silentLogger, { partition: 'none' }).filter((s) => s.name.endsWith('trade_windows'));
  await rejected.open();
  await windows.open();
  try {
    // Two writers (two in-memory DuckDBs) side by side: half the wall time.
    await Promise.all([
      (async () => {
        for (let b = 0; b < REJECTED_BATCHES; b++) await rejected.write(batch(b, rejectedRows(b), []));
      })(),
      (async () => {
        for (let b = 0; b < WINDOW_BATCHES; b++) await windows.write(batch(b, [], [windowRow(b)]));
      })(),
    ]);
  } finally {
    await rejected.close();
    await windows.close();
  }
  renameSync(join(byDate, 'rejected_trades'), join(TEMPLATE, 'rejected_trades'));
}

let copies = 0;
/** A fresh copy of the template store (each test changes its own). */
function store(): string {
  const dir = join(root, `store-${copies++}`);
  cpSync(TEMPLATE, dir, { recursive: true });
  return dir;
}

const ref = (dir: string, name: string): DeltaTableRef => ({ name, dir: join(dir, name) });

/** Rows as comparable text, sorted: the multiset a reader sees. */
async function rowSet(tableDir: string, version?: number): Promise<string[]> {
  const rows = await readDeltaTable(tableDir, { version });
  return rows.map((r) => JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))).sort();
}

/** Data files on disk (not _delta_log), relative to the table. */
function diskFiles(tableDir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith('_') || e.name.startsWith('.')) continue;
      if (e.isDirectory()) walk(join(d, e.name));
      else out.push(relative(tableDir, join(d, e.name)));
    }
  };
  walk(tableDir);
  return out.sort();
}

beforeAll(async () => {
  await buildTemplate();
  files = await ParquetWriter.open();
}, 60_000);

afterAll(() => {
  killAll();
  files?.close();
  if (!process.env.KEEP_OPTIMIZE_DIR) rmSync(root, { recursive: true, force: true });
});

describe('optimize', () => {
  it('compacts 520 small files into one per partition, same rows, dataChange=false, old versions still readable', async () => {
    const dir = store();
    const table = ref(dir, 'rejected_trades');
    const before = await readDeltaLog(table.dir);
    expect(before.files).toHaveLength(REJECTED_BATCHES * DAYS);
    expect(before.metaData.partitionColumns).toEqual(['date']);
    const rowsBefore = await rowSet(table.dir);
    expect(rowsBefore).toHaveLength(REJECTED_BATCHES * DAYS * 2);

    const r = await optimizeTable(table, files, { logger: silentLogger });
    expect(r).toMatchObject({ filesBefore: 520, filesAfter: DAYS, removed: 520, added: DAYS, version: before.version + 1 });
    expect(r.conflict).toBeUndefined();

    const after = await readDeltaLog(table.dir);
    expect(after.version).toBe(before.version + 1);
    expect(after.files).toHaveLength(DAYS);
    expect(after.files.map((f) => f.partitionValues.date).sort()).toEqual(['2019-07-01', '2019-07-02', '2019-07-03', '2019-07-04']);
    for (const f of after.files) expect(f.path.startsWith(`date=${f.partitionValues.date}/`)).toBe(true);
    expect(await rowSet(table.dir)).toEqual(rowsBefore);
    // Stats of the new files describe what they hold.
    expect(after.files.reduce((n, f) => n + Number(f.stats?.numRecords), 0)).toBe(REJECTED_BATCHES * DAYS * 2);

    // The commit: only rearranges data.
    const actions = await readCommit(join(table.dir, '_delta_log'), after.version, table.dir);
    const adds = actions.filter((a) => a.add).map((a) => a.add as Record<string, unknown>);
    const removes = actions.filter((a) => a.remove).map((a) => a.remove as Record<string, unknown>);
    const info = actions.find((a) => a.commitInfo)?.commitInfo as Record<string, unknown>;
    expect(adds).toHaveLength(DAYS);
    expect(removes).toHaveLength(520);
    expect(adds.every((a) => a.dataChange === false)).toBe(true);
    for (const rm of removes) {
      expect(rm).toMatchObject({ dataChange: false, extendedFileMetadata: true });
      expect(typeof rm.deletionTimestamp).toBe('number');
      expect(typeof rm.size).toBe('number');
      expect(rm.partitionValues).toHaveProperty('date');
    }
    expect(new Set(removes.map((rm) => rm.path))).toEqual(new Set(before.files.map((f) => encodeDeltaPath(f.path))));
    expect(info).toMatchObject({ operation: 'OPTIMIZE', readVersion: before.version, isBlindAppend: false });
    expect(actions.some((a) => a.txn)).toBe(false);

    // Time travel: the version before still lists the 520 files, and they are still there.
    const old = await readDeltaLog(table.dir, { version: before.version });
    expect(old.files).toHaveLength(520);
    expect(await rowSet(table.dir, before.version)).toEqual(rowsBefore);

    // An independent reader: DuckDB's read_parquet over the files the log lists.
    const list = after.files.map((f) => `'${dataFilePath(after, f).replace(/'/g, "''")}'`).join(', ');
    const duck = await withDuckDB(':memory:', async (conn) => (await conn.runAndReadAll(`SELECT raw, detail FROM read_parquet([${list}], hive_partitioning = false) ORDER BY raw`)).getRowObjectsJS());
    expect(duck.map((r) => `${r.raw}|${r.detail}`)).toEqual(rowsBefore.map((t) => JSON.parse(t) as Record<string, string>).map((r) => `${r.raw}|${r.detail}`).sort());

    // Nothing left to compact: a second run commits nothing.
    const again = await optimizeTable(table, files, { logger: silentLogger });
    expect(again).toMatchObject({ removed: 0, added: 0, version: null, filesBefore: DAYS, filesAfter: DAYS });
    expect((await readDeltaLog(table.dir)).version).toBe(after.version);
  });

  it('packs by the target size (input bytes) and leaves files at least that big alone', async () => {
    const dir = store();
    const table = ref(dir, 'trade_windows');
    const before = await readDeltaLog(table.dir);
    expect(before.files).toHaveLength(WINDOW_BATCHES);
    const rowsBefore = await rowSet(table.dir);
    const sizes = before.files.map((f) => f.size);
    // No file is smaller than the smallest: nothing to do.
    expect(await optimizeTable(table, files, { logger: silentLogger, targetSize: Math.min(...sizes) })).toMatchObject({ removed: 0, version: null });
    // Bins of about 10 files' worth of input.
    const target = Math.max(...sizes) * 10;
    const r = await optimizeTable(table, files, { logger: silentLogger, targetSize: target });
    expect(r.removed).toBe(WINDOW_BATCHES);
    expect(r.added).toBeGreaterThanOrEqual(Math.ceil(sizes.reduce((a, b) => a + b, 0) / target));
    expect(r.added).toBeLessThan(WINDOW_BATCHES / 5);
    const after = await readDeltaLog(table.dir);
    expect(after.files).toHaveLength(r.filesAfter);
    expect(await rowSet(table.dir)).toEqual(rowsBefore);
    // Each new file is smaller than the target, so a second pass packs them again (by input bytes).
    const second = await optimizeTable(table, files, { logger: silentLogger, targetSize: 1 });
    expect(second).toMatchObject({ removed: 0, version: null }); // nothing smaller than 1 byte
  });

  it('gives up a table, deleting its new files, when a concurrent writer removed files it compacts (--fresh)', async () => {
    const dir = store();
    const table = ref(dir, 'trade_windows');
    const filesOnDisk = diskFiles(table.dir);
    const r = await optimizeTable(table, files, {
      logger: silentLogger,
      // Like `run --fresh` meanwhile: one commit removing every file.
      beforeCommit: async () => {
        const s = await readDeltaLog(table.dir);
        const log = new DeltaTableLog(table.dir, silentLogger);
        await log.open({ schemaString: s.metaData.schemaString, partitionColumns: s.metaData.partitionColumns });
        await log.commit([...s.files.map((f) => ({ remove: { path: encodeDeltaPath(f.path), deletionTimestamp: Date.now(), dataChange: true } })), { commitInfo: { operation: 'DELETE' } }]);
      },
    });
    expect(r.conflict).toMatch(/removed by a concurrent commit/);
    expect(r.version).toBeNull();
    const after = await readDeltaLog(table.dir);
    expect(after.files).toHaveLength(0); // the rows stay deleted
    expect(await readDeltaTable(table.dir)).toEqual([]);
    const info = (await readCommit(join(table.dir, '_delta_log'), after.version, table.dir)).find((a) => a.commitInfo)?.commitInfo as Record<string, unknown>;
    expect(info.operation).toBe('DELETE');
    expect(diskFiles(table.dir)).toEqual(filesOnDisk); // the compacted file is gone again
  });

  it('retries after losing the race to an appending writer, and keeps its rows', async () => {
    const dir = store();
    const table = ref(dir, 'trade_windows');
    const rowsBefore = await rowSet(table.dir);
    const v0 = (await readDeltaLog(table.dir)).version;
    // A sink checks every table of its store before it opens one (and this copy's rejected_trades is
    // by date, as no run with --delta-partition none would have it): this test needs trade_windows only.
    rmSync(join(dir, 'rejected_trades'), { recursive: true });
    const [sink] = createDeltaSinks(`delta:${dir}`, silentLogger, { partition: 'none' }).filter((s) => s.name.endsWith('trade_windows'));
    let raced = 0;
    const r = await optimizeTable(table, files, {
      logger: silentLogger,
      beforeCommit: async () => {
        await sink.open();
        await sink.write(batch(1000, [], [windowRow(1000)]));
        await sink.write(batch(1001, [], [windowRow(1001)])); // two commits: the optimize loses at least once
        await sink.close();
        raced++;
      },
    });
    expect(raced).toBe(1);
    expect(r.conflict).toBeUndefined();
    const after = await readDeltaLog(table.dir);
    expect(r.version).toBe(after.version);
    expect(r.version).toBe(v0 + 3); // after the two appends it did not see when it planned
    expect(after.files).toHaveLength(3); // the compacted file + the two appended ones
    const expected = [...rowsBefore];
    const added = await rowSet(table.dir);
    expect(added).toHaveLength(WINDOW_BATCHES + 2);
    for (const row of expected) expect(added).toContain(row);
  });
});

describe('the Parquet writer a store\'s tables share', () => {
  it('takes writes of two tables at once (process: two partitions\' pipelines), one statement at a time', async () => {
    // Before, these ran on the one connection at the same time: "Attempting to execute an unsuccessful
    // or closed pending query result" in 3 of 5 process runs.
    const dir = join(root, 'concurrent');
    const writes = Array.from({ length: 24 }, (_, i) => {
      const def = DELTA_TABLES[i % 2 === 0 ? 'rejected_trades' : 'trade_windows'];
      return files.write(def, rowsOf(def, batch(i, rejectedRows(i), [windowRow(i)]), -Infinity)!, join(dir, def.name), false);
    });
    const adds = await Promise.all(writes);
    expect(adds.map((a) => a.length)).toEqual(Array.from({ length: 24 }, () => 1));
    const rows = await withDuckDB(':memory:', async (conn) => {
      const count = async (table: string) => Number((await conn.runAndReadAll(`SELECT count(*) FROM read_parquet('${join(dir, table)}/*.parquet')`)).getRows()[0][0]);
      return { rejected: await count('rejected_trades'), windows: await count('trade_windows') };
    });
    expect(rows).toEqual({ rejected: 12 * DAYS * 2, windows: 12 });
  });
});

describe('vacuum', () => {
  it('keeps removed files within the retention, then deletes them and orphans at --retention 0s; the table reads the same', async () => {
    const dir = store();
    const table = ref(dir, 'rejected_trades');
    const v0 = (await readDeltaLog(table.dir)).version;
    const rowsBefore = await rowSet(table.dir);
    await optimizeTable(table, files, { logger: silentLogger });
    const snapshot = await readDeltaLog(table.dir);
    // An orphan: a file a crashed writer wrote but never committed, written long ago; and a new one.
    const src = dataFilePath(snapshot, snapshot.files[0]);
    const oldOrphan = join(table.dir, 'date=2019-07-01', 'part-00000-orphan-old-c000.snappy.parquet');
    const newOrphan = join(table.dir, 'date=2019-07-01', 'part-00000-orphan-new-c000.snappy.parquet');
    copyFileSync(src, oldOrphan);
    copyFileSync(src, newOrphan);
    const eightDaysAgo = new Date(Date.now() - 8 * DAY);
    utimesSync(oldOrphan, eightDaysAgo, eightDaysAgo);
    const onDisk = diskFiles(table.dir);
    expect(onDisk).toHaveLength(520 + DAYS + 2);

    // Default retention (7 days): the tombstones are minutes old, time travel must keep working.
    const dry = await vacuumTable(table, { dryRun: true });
    expect(dry.deleted).toEqual(['date=2019-07-01/part-00000-orphan-old-c000.snappy.parquet']);
    expect(diskFiles(table.dir)).toEqual(onDisk);
    const kept = await vacuumTable(table);
    expect(kept).toMatchObject({ expiredTombstones: 0, orphans: 1, keptRecent: 521, activeFiles: DAYS });
    expect(kept.bytesFreed).toBe(statSync(src).size);
    expect(await rowSet(table.dir, v0)).toEqual(rowsBefore);
    // Again: nothing new to delete.
    const second = await vacuumTable(table);
    expect(second.deleted).toEqual([]);

    // Retention 0: every file the current version does not use goes, but for a file no commit names
    // that is younger than an hour (a running writer may be about to commit it); _delta_log is untouched.
    const logBefore = readdirSync(join(table.dir, '_delta_log')).sort();
    const r = await vacuumTable(table, { retentionMs: 0 });
    expect(r).toMatchObject({ expiredTombstones: 520, orphans: 0, keptRecent: 1, activeFiles: DAYS });
    expect(r.bytesFreed).toBe(snapshot.tombstones.reduce((n, t) => n + Number(t.size), 0));
    expect(diskFiles(table.dir)).toEqual([...snapshot.files.map((f) => f.path), relative(table.dir, newOrphan)].sort());
    // An hour on, it goes too.
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(newOrphan, twoHoursAgo, twoHoursAgo);
    expect(await vacuumTable(table, { retentionMs: 0 })).toMatchObject({ orphans: 1, keptRecent: 0 });
    expect(diskFiles(table.dir)).toEqual(snapshot.files.map((f) => f.path).sort());
    expect(readdirSync(join(table.dir, '_delta_log')).sort()).toEqual(logBefore);
    expect(await rowSet(table.dir)).toEqual(rowsBefore);
    expect((await vacuumTable(table, { retentionMs: 0 })).deleted).toEqual([]);
  });

  it('leaves alone a table nested inside the one it vacuums, and no store can be made inside a table', async () => {
    const dir = store();
    const table = ref(dir, 'rejected_trades');
    // What a store made inside this table left before the check (it deleted the nested tables' files).
    const nested = join(table.dir, 'inner', 'trade_windows');
    cpSync(join(dir, 'trade_windows'), nested, { recursive: true });
    const nestedFiles = diskFiles(nested);
    const nestedRows = await rowSet(nested);
    expect(nestedFiles.length).toBeGreaterThan(0);
    const r = await vacuumTable(table, { retentionMs: 0 });
    expect(r.deleted.filter((f) => f.startsWith('inner/'))).toEqual([]);
    expect(diskFiles(nested)).toEqual(nestedFiles);
    expect(await rowSet(nested)).toEqual(nestedRows);

    for (const [target, what] of [
      [table.dir, `${table.dir} is itself a Delta table`],
      [join(table.dir, 'deeper'), `${join(table.dir, 'deeper')} is inside the Delta table ${table.dir}`],
    ]) {
      const run = spawnCoinstream(['run', '--source', 'replay:data/kraken-btcusd-2019-07-01.coincap.jsonl', '--speed', 'max', '--sink', `delta:${target}`]);
      expect((await run.exit).code).toBe(2);
      expect(run.stderr().trim().split('\n')).toEqual([`coinstream: --sink delta:${target}: ${what} (it has a _delta_log); a coinstream store is a directory of its own tables: give one outside any table, e.g. --sink delta:./coinstream-delta`]);
    }
    const query = spawnCoinstream(['query', '--store', `delta:${table.dir}`]);
    expect((await query.exit).code).toBe(2);
    expect(query.stderr().trim()).toMatch(/is a Delta table, not a coinstream store \(a directory that holds trade_windows, price_trends and rejected_trades\); point --store at that directory$/);
  });
});

describe('coinstream optimize', () => {
  it('optimizes every table of delta:DIR, one summary line each, then vacuums', async () => {
    const dir = store();
    expect((await findDeltaTables(dir)).map((t) => t.name)).toEqual(['trade_windows', 'rejected_trades']);
    const rows = { w: await rowSet(join(dir, 'trade_windows')), r: await rowSet(join(dir, 'rejected_trades')) };
    const run = spawnCoinstream(['optimize', `delta:${dir}`, '--vacuum', '--retention', '0s']);
    const { code } = await run.exit;
    expect(code, run.stderr()).toBe(0);
    const lines = run.stderr().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(lines.filter((l) => l.msg.startsWith('optimize ')).map((l) => l.msg.split(':')[0])).toEqual(['optimize trade_windows', 'optimize rejected_trades']);
    expect(lines.find((l) => l.msg.startsWith('optimize rejected_trades'))?.msg).toMatch(/520 -> 4 files/);
    expect(lines.find((l) => l.msg.startsWith('vacuum rejected_trades'))?.msg).toMatch(/deleted 520 files/);
    expect(lines.some((l) => l.level === 40 && /--retention 0s/.test(l.msg))).toBe(true);
    expect(await rowSet(join(dir, 'trade_windows'))).toEqual(rows.w);
    expect(await rowSet(join(dir, 'rejected_trades'))).toEqual(rows.r);
    expect(diskFiles(join(dir, 'rejected_trades'))).toHaveLength(DAYS);

    // A dry run says what it would do, and no size after it cannot know.
    const dry = spawnCoinstream(['optimize', `delta:${store()}`, '--dry-run']);
    expect((await dry.exit).code).toBe(0);
    expect(dry.stderr()).toMatch(/optimize rejected_trades: 520 -> 4 files, [\d.]+ KiB now \(the size after is known once written\) \(520 files -> 4\) in [\d.]+s \(dry run: nothing changed\)/);

    // One table directory works too.
    const single = spawnCoinstream(['optimize', `delta:${join(dir, 'trade_windows')}`]);
    expect((await single.exit).code).toBe(0);
    expect(single.stderr()).toMatch(/optimize trade_windows: 1 -> 1 files/);
  });

  it('refuses a bad store or flag with one line and exit code 2', async () => {
    for (const args of [['optimize', join(root, 'template')], ['optimize', `delta:${join(root, 'nowhere')}`], ['optimize', `delta:${TEMPLATE}`, '--retention', '7'], ['optimize', `delta:${root}`]]) {
      const run = spawnCoinstream(args);
      expect((await run.exit).code, args.join(' ')).toBe(2);
      expect(run.stderr().trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
  });
});
