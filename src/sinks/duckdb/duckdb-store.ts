// The embedded store: DuckDB. One transaction per trigger, so a crash leaves the store at a trigger
// boundary, never half a batch. Rows go in through DuckDB's appender, column by column (exact values,
// no SQL text): window and trend rows that cannot be stored yet are appended to their tables, the few
// that may be (see KeyedRows) go through a staging table and replace the stored rows with their keys;
// rejects and accepted trades are appended.
//
// The trade archive is the hot path (every accepted trade): what repeats from trade to trade
// (exchange, base, quote, direction) is stored once in trade_keys and referenced by id, because
// appending a VARCHAR costs about five times as much as a number (measured: 4 VARCHAR columns 750 ms,
// 4 integer columns 155 ms per million rows), and an INSERT ... SELECT that turns ids into names in
// DuckDB cost another 0.6 s per million.

import { existsSync, rmSync, statSync } from 'node:fs';
import type { StoreLogger } from './worker-protocol.js';
import { crashIfAsked } from '../fault.js';
import { CoinstreamError } from '../../core/errors.js';
import type { RejectedTrade } from '../../core/trade.js';
import type { BatchProgress, OutputBatch, Sink, StoredProgress } from '../contract.js';
import type { TradeKey } from '../contract.js';
import { tradeKeyText } from '../trade-batch.js';
import { appendColumns, pickRows } from './columns.js';
import { numbers, toStoreBatch, tradeLogColumns, type Column, type KeyedColumns, type StoreBatch } from './store-batch.js';
import { DUCKDB_SCHEMA, OLD_LOG_LAYOUT_CHECK } from './schema.js';
import { DUCKDB_CHECKPOINT_THRESHOLD, DUCKDB_MEMORY_LIMIT, openLeanDuckDB, whyNotDuckDB } from './open.js';
import type { LeanConnection, LeanDuckDB } from './lean.js';
import { progressFromRows } from '../sql/sql-reader.js';

// Staging tables have the target's columns (no keys): rows that may replace stored ones go there
// first, then one statement deletes the stored rows with their keys and one moves them in.
const STAGING = `
CREATE TEMP TABLE IF NOT EXISTS staging_windows AS SELECT * FROM trade_windows LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS staging_trends AS SELECT * FROM price_trends LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS staging_progress AS SELECT * FROM stream_progress LIMIT 0;
`;

/** The stream_progress row of the job itself (engine state), beside one row per source. */
const JOB_ROW = '*';

/**
 * Which rows of a keyed table (trade_windows, price_trends) may already be stored. Appending is
 * several times cheaper than replacing (measured, 25k window rows: 40 ms against 170 ms), and at
 * replay speed nearly every row is new. Per asset, the latest window end stored is known (read at
 * open, raised at each commit): a row that ends later cannot be in the store and is appended; any
 * other row replaces the stored row with its key, if there is one. So a row written again (an open
 * window updated, a final one re-sent after a restart) replaces the stored one, and the table holds
 * one row per key without an index to enforce it (see schema.ts).
 */
class KeyedRows {
  constructor(private readonly latestEnd: Map<string, number>) {}

  /** Splits rows into those to append and those to upsert. */
  split(rows: KeyedColumns): SplitRows {
    const existing = rowsMaybeStored(rows.windowEnd, rows.asset.ids, this.latestOf(rows), rows.length);
    // At replay speed nearly every row is new: no list of row numbers is built for them.
    if (existing === null) return { fresh: rows.columns, freshCount: rows.length, existing: [], existingCount: 0, earliestEnd: Infinity };
    const earliestEnd = existing.reduce((min, i) => Math.min(min, rows.windowEnd[i]), Infinity);
    const fresh = otherRows(existing, rows.length);
    return { fresh: pickRows(rows.columns, fresh), freshCount: fresh.length, existing: pickRows(rows.columns, existing), existingCount: existing.length, earliestEnd };
  }

  /** After a commit: these rows are stored. */
  committed(rows: KeyedColumns): void {
    const latest = this.latestOf(rows);
    raiseLatest(rows.windowEnd, rows.asset.ids, latest, rows.length);
    rows.asset.values.forEach((asset, id) => {
      if (latest[id] > -Infinity) this.latestEnd.set(asset, latest[id]);
    });
  }

  /** Per asset id of the rows, the latest window end stored (-Infinity for none): a look-up per asset, not per row. */
  private latestOf(rows: KeyedColumns): Float64Array {
    return Float64Array.from(rows.asset.values, (asset) => this.latestEnd.get(asset) ?? -Infinity);
  }
}

// The loops over every row are functions of their own that do nothing after the loop. V8 compiles a
// hot loop while it runs (on-stack replacement) and enters that code again on later calls; work after
// the loop that the code had not seen (a call, a property of another shape) sent it back to the
// interpreter on every call (seen: split, committed and pickRows, dozens of times per million trades).

/** The rows whose window ends no later than their asset's latest stored end (a stored row may have their key); null for none. */
function rowsMaybeStored(windowEnd: Float64Array, ids: Uint32Array, latest: Float64Array, n: number): number[] | null {
  let rows: number[] | null = null;
  for (let i = 0; i < n; i++) if (windowEnd[i] <= latest[ids[i]]) (rows ??= []).push(i);
  return rows;
}

/** Rows [0, n) not in `rows` (ascending). */
function otherRows(rows: readonly number[], n: number): number[] {
  const others: number[] = [];
  for (let i = 0, r = 0; i < n; i++) {
    if (r < rows.length && rows[r] === i) r++;
    else others.push(i);
  }
  return others;
}

/** latest[asset id] becomes the latest window end of that asset's rows, if later. */
function raiseLatest(windowEnd: Float64Array, ids: Uint32Array, latest: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) if (windowEnd[i] > latest[ids[i]]) latest[ids[i]] = windowEnd[i];
}

interface SplitRows {
  /** Rows no stored row can have the key of: appended. */
  fresh: Column[];
  freshCount: number;
  /** Rows that may replace a stored row. */
  existing: Column[];
  existingCount: number;
  /** The earliest window end among `existing` (epoch ms): stored rows ending before it are not looked at. */
  earliestEnd: number;
}

/** Writes batches to a DuckDB file from the calling thread. DuckDBSink runs one in a worker. */
export class DuckDBStore implements Sink {
  readonly name: string;
  private db: LeanDuckDB | null = null;
  private conn: LeanConnection | null = null;
  /** trade_keys as committed: key text -> id. */
  private readonly keyIds = new Map<string, number>();
  private windows = new KeyedRows(new Map());
  private trends = new KeyedRows(new Map());
  /** The file was made by this open (see isJustMade): it holds nothing, and nothing needs reading. */
  private madeNow = false;
  /** A transaction is open for the next batch (see write). */
  private inTransaction = false;

  constructor(readonly path: string, private readonly logger: StoreLogger) {
    this.name = `duckdb:${path}`;
  }

  /** Opens the store, creating the file if there is none. */
  async open(): Promise<void> {
    refuseOtherFiles(this.path);
    clearHalfMadeStore(this.path, this.logger);
    // One DuckDB thread: the store writes while the pipeline parses on the other core, and appends
    // plus commits of row-group-sized batches do not gain from more (measured, 1M trades: 0.55 CPU-s
    // with one thread, 0.9 CPU-s with two, same wall time).
    // A bounded buffer pool (DUCKDB_MEMORY_LIMIT): RSS stays flat over a long run. Checkpoints at a
    // larger WAL than DuckDB's default (DUCKDB_CHECKPOINT_THRESHOLD): fewer rewrites of row groups.
    const db = await openLeanDuckDB(this.path, { threads: 1, memoryLimit: DUCKDB_MEMORY_LIMIT(), checkpointThreshold: DUCKDB_CHECKPOINT_THRESHOLD });
    const conn = db.conn;
    this.db = db;
    this.conn = conn;
    // A new file holds DuckDB's headers now, and none of our tables yet.
    crashIfAsked('kill-creating-store', 0);
    // A store without any of our tables (one DuckDB has just made) needs none of the checks and
    // reads below: one look at the catalog instead of five queries, ~13 ms off every new store's start.
    let holdsTables = false;
    try {
      this.madeNow = isJustMade(this.path);
      holdsTables = !this.madeNow && (await holdsOurTables(conn));
      if (holdsTables) {
        const [[oldLayout]] = (await conn.runAndReadAll(OLD_LOG_LAYOUT_CHECK)).getRowsJS();
        if (Number(oldLayout) > 0) {
          throw new CoinstreamError('CONFIG', `${this.path} was written by an earlier coinstream whose trade log this version cannot append to; move it away or use another --sink duckdb:PATH`);
        }
        await refuseForeignTables(conn, this.path);
      }
    } catch (err) {
      await this.close();
      throw err;
    }
    await conn.run(DUCKDB_SCHEMA);
    await conn.run(STAGING);
    if (holdsTables) {
      for (const [id, exchange, base, quote, direction] of (await conn.runAndReadAll('SELECT id, exchange, base, quote, direction FROM trade_keys')).getRowsJS()) {
        this.keyIds.set(tradeKeyText({ exchange, base, quote, direction } as TradeKey), Number(id));
      }
      const latest = async (table: string) => {
        const rows = (await conn.runAndReadAll(`SELECT asset, epoch_ms(max(window_end))::DOUBLE FROM ${table} GROUP BY asset`)).getRowsJS();
        return new Map(rows.map(([asset, end]) => [String(asset), Number(end)]));
      };
      this.windows = new KeyedRows(await latest('trade_windows'));
      this.trends = new KeyedRows(await latest('price_trends'));
    }
    this.logger.info({ path: this.path }, 'duckdb store open');
  }

  /** Whether the store holds any results or progress (a store that was said to start empty must not). */
  async holdsResults(): Promise<boolean> {
    const conn = this.conn;
    if (!conn) throw new CoinstreamError('SINK_FAILED', `${this.name}: read before open`);
    if (this.madeNow) return false;
    const [[held]] = (await conn.runAndReadAll('SELECT (SELECT count(*) FROM stream_progress) + (SELECT count(*) FROM trade_windows) + (SELECT count(*) FROM trade_log)')).getRowsJS();
    return Number(held) > 0;
  }

  write(batch: OutputBatch): Promise<void> {
    return this.writeColumns(toStoreBatch(batch));
  }

  /** Writes a batch already in columns (the worker receives it so from DuckDBSink). */
  async writeColumns(batch: StoreBatch): Promise<void> {
    const conn = this.conn;
    if (!conn) throw new CoinstreamError('SINK_FAILED', `${this.name}: write before open`);
    try {
      if (!this.inTransaction) await conn.run('BEGIN TRANSACTION');
      this.inTransaction = true;
      const upserts =
        (await this.writeKeyed(conn, 'trade_windows', 'staging_windows', this.windows.split(batch.windows))) +
        (await this.writeKeyed(conn, 'price_trends', 'staging_trends', this.trends.split(batch.trends)));
      await appendColumns(conn, 'rejected_trades', rejectedColumns(batch.rejected), batch.rejected.length);
      const addedKeys = await this.archiveTrades(conn, batch);
      const progress = batch.progress ? await this.stageProgress(conn, batch.batchId, batch.progress) : '';
      // Statements run on libuv's thread pool, and under load each round trip waits for a core
      // (measured: 1-20 ms for a bare BEGIN). So the upserts, the commit and the next batch's BEGIN go
      // in one round trip; the appends above are synchronous calls on this thread.
      crashIfAsked('kill-before-commit', batch.batchId);
      await conn.run(`${upserts}${progress}COMMIT; BEGIN TRANSACTION;`);
      crashIfAsked('kill-after-commit', batch.batchId);
      // Only what is committed counts as stored: a rolled-back batch changes none of this.
      for (const key of addedKeys) this.keyIds.set(tradeKeyText(key), this.keyIds.size);
      this.windows.committed(batch.windows);
      this.trends.committed(batch.trends);
    } catch (err) {
      this.inTransaction = false;
      await conn.run('ROLLBACK').catch((rollbackErr: unknown) => {
        // A COMMIT that fails (a full disk) has rolled the transaction back itself: nothing is left to
        // roll back, and a warning that the rollback failed would only mislead whoever reads the log.
        if (/no transaction is active/i.test((rollbackErr as Error).message)) return;
        this.logger.warn({ err: rollbackErr }, 'duckdb rollback after a failed batch failed');
      });
      const message = (err as Error).message;
      throw new CoinstreamError('SINK_FAILED', `${this.name}: writing batch ${batch.batchId} failed: ${message}`, isTransient(message), { cause: err });
    }
  }

  async close(): Promise<void> {
    // The transaction opened for the next batch holds nothing yet.
    if (this.inTransaction) await this.conn?.run('COMMIT');
    this.inTransaction = false;
    this.db?.closeSync();
    this.conn = null;
    this.db = null;
  }

  /** Stages the batch's progress rows; returns the SQL that moves them into stream_progress. */
  private async stageProgress(conn: LeanConnection, batchId: number, p: BatchProgress): Promise<string> {
    const sources = Object.keys(p.positions);
    const rows = [JOB_ROW, ...sources];
    const n = rows.length;
    const all = <T>(value: T) => Array.from({ length: n }, () => value);
    await appendColumns(
      conn,
      'staging_progress',
      [
        { kind: 'varchar', values: all(p.job) },
        { kind: 'varchar', values: rows },
        { kind: 'varchar', values: [null, ...sources.map((s) => JSON.stringify(p.positions[s]))] },
        { kind: 'double', values: Float64Array.from(all(p.watermark)) },
        { kind: 'bigint', values: Float64Array.from(all(batchId)) },
        { kind: 'varchar', values: all(p.settings) },
        { kind: 'varchar', values: [p.engineState, ...all(null).slice(1)] },
        { kind: 'boolean', values: Uint8Array.from(all(p.finished ? 1 : 0)) },
        { kind: 'timestamp', values: Float64Array.from(all(Date.now())) },
      ],
      n,
    );
    return 'INSERT OR REPLACE INTO stream_progress SELECT * FROM staging_progress; DELETE FROM staging_progress;';
  }

  /** The job's progress as of the last committed batch; null for a job never run in this store. */
  async readProgress(job: string): Promise<StoredProgress | null> {
    const conn = this.conn;
    if (!conn) throw new CoinstreamError('SINK_FAILED', `${this.name}: read before open`);
    const rows = (
      await conn.runAndReadAll(
        'SELECT source, position, watermark, batch_id::DOUBLE AS batch_id, settings, engine_state, finished, epoch_ms(updated_at)::DOUBLE AS updated_at FROM stream_progress WHERE job = $job',
        { job },
      )
    ).getRowObjectsJS();
    const jobRow = rows.find((r) => r.source === JOB_ROW);
    if (!jobRow) {
      // Rows of other jobs (the partitions of a `process` group share a store) are theirs; rows of no
      // job at all were written by an earlier coinstream and cannot be resumed.
      const [[held, jobs]] = (await conn.runAndReadAll('SELECT (SELECT count(*) FROM trade_windows) + (SELECT count(*) FROM rejected_trades) + (SELECT count(*) FROM trade_log), (SELECT count(*) FROM stream_progress)')).getRowsJS();
      if (Number(held) === 0 || Number(jobs) > 0) return null;
      throw new CoinstreamError(
        'CONFIG',
        `${this.path} holds results but no progress to resume them from (written by an earlier coinstream, or by another job); start over with --fresh, or use another --sink duckdb:PATH`,
      );
    }
    return progressFromRows(job, rows);
  }

  /** The jobs with progress here (one, for a store that only `run` wrote). */
  async jobs(): Promise<string[]> {
    const conn = this.conn;
    if (!conn) throw new CoinstreamError('SINK_FAILED', `${this.name}: read before open`);
    return (await conn.runAndReadAll('SELECT DISTINCT job FROM stream_progress ORDER BY job')).getRowsJS().map((r) => String(r[0]));
  }

  /** Removes every row and the progress: a DuckDB store holds one job. */
  async clearJob(job: string): Promise<void> {
    const conn = this.conn;
    if (!conn) throw new CoinstreamError('SINK_FAILED', `${this.name}: clear before open`);
    const tables = ['trade_windows', 'price_trends', 'rejected_trades', 'trade_log', 'trade_keys'];
    // One round trip inside the transaction kept open for the next batch (several statements take no parameters).
    const jobLiteral = `'${job.replace(/'/g, "''")}'`;
    const deletes = [...tables.map((t) => `DELETE FROM ${t};`), `DELETE FROM stream_progress WHERE job = ${jobLiteral};`].join(' ');
    await conn.run(`${this.inTransaction ? '' : 'BEGIN TRANSACTION; '}${deletes} COMMIT; BEGIN TRANSACTION;`);
    this.inTransaction = true;
    this.keyIds.clear();
    this.windows = new KeyedRows(new Map());
    this.trends = new KeyedRows(new Map());
  }

  /** Appends the fresh rows and stages the others; returns the SQL that moves staged rows in. */
  private async writeKeyed(conn: LeanConnection, table: string, staging: string, rows: SplitRows): Promise<string> {
    await appendColumns(conn, table, rows.fresh, rows.freshCount);
    if (rows.existingCount === 0) return '';
    await appendColumns(conn, staging, rows.existing, rows.existingCount);
    // The bound on window_end lets DuckDB skip the row groups of older windows (their min/max) instead
    // of reading the whole table for every batch. (Also right for a store made with a PRIMARY KEY.)
    const key = 'asset, window_start, window_end';
    return `DELETE FROM ${table} WHERE window_end >= epoch_ms(${rows.earliestEnd}::BIGINT) AND (${key}) IN (SELECT ${key} FROM ${staging}); INSERT INTO ${table} SELECT * FROM ${staging}; DELETE FROM ${staging};`;
  }

  /**
   * Appends the batch's trades to trade_log. The batch's key ids are its own; they are mapped to the
   * store's ids here, and keys new to the store are added in the same transaction.
   */
  private async archiveTrades(conn: LeanConnection, batch: StoreBatch): Promise<TradeKey[]> {
    const t = batch.trades;
    if (t.length === 0) return [];
    const added: TradeKey[] = [];
    const toStore = new Uint32Array(t.keys.length);
    t.keys.forEach((key, i) => {
      let id = this.keyIds.get(tradeKeyText(key));
      if (id === undefined) {
        id = this.keyIds.size + added.length;
        added.push(key);
      }
      toStore[i] = id;
    });
    const first = this.keyIds.size;
    await appendColumns(
      conn,
      'trade_keys',
      [
        { kind: 'uinteger', values: Uint32Array.from(added, (_, i) => first + i) },
        { kind: 'varchar', values: added.map((k) => k.exchange) },
        { kind: 'varchar', values: added.map((k) => k.base) },
        { kind: 'varchar', values: added.map((k) => k.quote) },
        { kind: 'varchar', values: added.map((k) => k.direction) },
      ],
      added.length,
    );
    await appendColumns(conn, 'trade_log', tradeLogColumns(t, mapIds(t.key, t.length, toStore)), t.length);
    return added;
  }
}

/** A DuckDB file starts with three 4 KiB headers; the first holds the magic "DUCK" at byte 8. */
const DUCKDB_HEADERS_BYTES = 3 * 4096;

/**
 * Whether the open file is one DuckDB has just made: its headers and nothing else, and no WAL (a store
 * whose tables were never checkpointed has one). Then it holds none of our tables, and the checks and
 * reads of an existing store, which would load node-api (~100-150 ms) to read their results, are skipped.
 */
function isJustMade(path: string): boolean {
  return statSync(path).size <= DUCKDB_HEADERS_BYTES && !existsSync(`${path}.wal`);
}

/**
 * Removes what a process killed while DuckDB was creating `path` leaves: an empty file, or fewer bytes
 * than DuckDB's headers, starting like one (refuseOtherFiles, called first, has refused any other).
 * DuckDB refuses such a file ("not a valid DuckDB database file"), so the next run could not start;
 * nothing is lost by removing it, since a store holds nothing before its headers are whole.
 */
function clearHalfMadeStore(path: string, logger: StoreLogger): void {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    return; // no file: DuckDB makes one
  }
  if (size >= DUCKDB_HEADERS_BYTES) return;
  logger.warn({ path, bytes: size }, `${path} is a store whose making was cut short (${size} bytes, DuckDB's headers not whole): removed, and made again`);
  rmSync(path, { force: true });
  rmSync(`${path}.wal`, { force: true });
}

/**
 * A file that is there and is not a DuckDB database is refused: DuckDB opened such a file (a .jsonl
 * with trades, say) as an in-memory database without a word, so a whole run's results went nowhere.
 */
function refuseOtherFiles(path: string): void {
  let why: string | null;
  try {
    why = whyNotDuckDB(path, { emptyIsStore: true }); // clearHalfMadeStore removes an empty one
  } catch {
    return; // no file: DuckDB makes one
  }
  if (why !== null) throw new CoinstreamError('CONFIG', `${path} is not a DuckDB store (${why}); coinstream writes nothing into it: give --sink duckdb: a new file or a store it wrote`);
}

/**
 * DuckDB errors that a retry of the same batch can get past: I/O (a full disk, a flaky mount), a lock
 * or a write conflict. A constraint or conversion error would fail the same way every time.
 */
function isTransient(message: string): boolean {
  return /^(IO Error|Interrupt Error)|Could not set lock|[Cc]onflict/.test(message);
}

/** The tables of DUCKDB_SCHEMA, as an SQL list. */
const OUR_TABLES_SQL = ['trade_windows', 'price_trends', 'rejected_trades', 'trade_keys', 'trade_log', 'stream_progress'].map((t) => `'${t}'`).join(', ');

/** Whether the store holds any of our tables (duckdb_tables() answers in ~1.5 ms where a first duckdb_columns() takes ~7). */
async function holdsOurTables(conn: LeanConnection): Promise<boolean> {
  const [[n]] = (await conn.runAndReadAll(`SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' AND table_name IN (${OUR_TABLES_SQL})`)).getRowsJS();
  return Number(n) > 0;
}

/**
 * A DuckDB file may already hold tables with our names that some other program made. Appending to
 * them would fail mid-run (or worse, succeed with columns in the wrong places), so such a store is
 * refused when it is opened: the tables we find must have exactly the columns our schema creates,
 * which is checked against the schema itself, created in a scratch in-memory database.
 */
async function refuseForeignTables(conn: LeanConnection, path: string): Promise<void> {
  const list = OUR_TABLES_SQL;
  const columns = (database: string) => `SELECT table_name, list(column_name || ' ' || data_type ORDER BY column_index) AS columns
    FROM duckdb_columns() WHERE database_name = ${database} AND schema_name = 'main' AND table_name IN (${list}) GROUP BY table_name`;
  const existing = (await conn.runAndReadAll(columns('current_database()'))).getRowObjectsJS();
  if (existing.length === 0) return; // none of our tables (open() asks holdsOurTables first)
  const [[current]] = (await conn.runAndReadAll('SELECT current_database()')).getRowsJS();
  await conn.run(`ATTACH ':memory:' AS coinstream_expected; USE coinstream_expected;`);
  try {
    await conn.run(DUCKDB_SCHEMA);
  } finally {
    await conn.run(`USE "${String(current).replace(/"/g, '""')}"`);
  }
  const expected = new Map((await conn.runAndReadAll(columns(`'coinstream_expected'`))).getRowObjectsJS().map((r) => [r.table_name, JSON.stringify(r.columns)]));
  await conn.run('DETACH coinstream_expected');
  const foreign = existing.filter((r) => expected.get(r.table_name) !== JSON.stringify(r.columns));
  if (foreign.length > 0) {
    const table = foreign[0];
    throw new CoinstreamError(
      'CONFIG',
      `${path} is not a coinstream store: its table ${String(table.table_name)} has the columns (${(table.columns as string[]).join(', ')}), not coinstream's; use another --sink duckdb:PATH`,
    );
  }
}

function mapIds(ids: Uint32Array, length: number, toStore: Uint32Array): Uint32Array {
  if (toStore.every((storeId, batchId) => storeId === batchId)) return ids;
  const out = new Uint32Array(length);
  for (let i = 0; i < length; i++) out[i] = toStore[ids[i]];
  return out;
}

function rejectedColumns(rows: RejectedTrade[]): Column[] {
  return [
    { kind: 'timestamp', values: numbers(rows, (r) => r.receivedAt) },
    { kind: 'varchar', values: rows.map((r) => r.source) },
    { kind: 'varchar', values: rows.map((r) => r.reason) },
    { kind: 'varchar', values: rows.map((r) => r.detail) },
    { kind: 'varchar', values: rows.map((r) => r.raw) },
  ];
}
