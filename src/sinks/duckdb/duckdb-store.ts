// The embedded store: DuckDB. One transaction per trigger, so a crash leaves the store at a trigger
// boundary, never half a batch. Rows go in through DuckDB's appender (exact doubles, no SQL text
// parsing): window, trend and rejected rows into temporary staging tables, from which one
// INSERT OR REPLACE per table upserts by key; accepted trades straight into trade_log.
//
// The trade archive is the hot path (every accepted trade): its low-cardinality strings (exchange,
// base, quote) are stored as ids into trade_names and read back by the `trades` view, because appending
// a VARCHAR costs about five times as much as a number (measured: 4 VARCHAR columns 750 ms, 4 integer
// columns 155 ms per million rows), and an INSERT ... SELECT that turns ids into names in DuckDB cost
// another 0.6 s per million.

import { BOOLEAN, DOUBLE, UINTEGER, VARCHAR, DuckDBDataChunk, type DuckDBAppender, type DuckDBConnection, type DuckDBInstance, type DuckDBType } from '@duckdb/node-api';
import duckdb from '@duckdb/node-bindings';
import type { Logger } from '../../core/logger.js';
import { CoinstreamError } from '../../core/errors.js';
import type { OutputBatch, Sink } from '../contract.js';
import { DUCKDB_SCHEMA } from './schema.js';
import { openDuckDB } from './open.js';

/** DuckDB's standard vector size: a data chunk holds at most this many rows. */
const CHUNK_ROWS = 2048;

type Cell = number | string | boolean | null;

const STAGING = `
CREATE TEMP TABLE IF NOT EXISTS staging_windows (asset VARCHAR, window_start DOUBLE, window_end DOUBLE, trades DOUBLE,
  total_volume DOUBLE, total_amount DOUBLE, average_price DOUBLE, vwap DOUBLE, open DOUBLE, high DOUBLE, low DOUBLE,
  close DOUBLE, buy_volume DOUBLE, sell_volume DOUBLE, is_final BOOLEAN, updated_at DOUBLE);
CREATE TEMP TABLE IF NOT EXISTS staging_trends (asset VARCHAR, window_start DOUBLE, window_end DOUBLE, vwap DOUBLE,
  prev_vwap DOUBLE, trend VARCHAR, avg_price_6m DOUBLE, change_6m_pct DOUBLE, windows_6m DOUBLE, is_final BOOLEAN);
CREATE TEMP TABLE IF NOT EXISTS staging_rejected (received_at DOUBLE, source VARCHAR, reason VARCHAR, detail VARCHAR, raw VARCHAR);
`;

const WINDOW_TYPES: DuckDBType[] = [VARCHAR, ...Array<DuckDBType>(13).fill(DOUBLE), BOOLEAN, DOUBLE];
const TREND_TYPES: DuckDBType[] = [VARCHAR, DOUBLE, DOUBLE, DOUBLE, DOUBLE, VARCHAR, DOUBLE, DOUBLE, DOUBLE, BOOLEAN];
const REJECTED_TYPES: DuckDBType[] = [DOUBLE, VARCHAR, VARCHAR, VARCHAR, VARCHAR];
const TRADE_LOG_TYPES: DuckDBType[] = [UINTEGER, UINTEGER, UINTEGER, BOOLEAN, DOUBLE, DOUBLE, DOUBLE, DOUBLE, VARCHAR, DOUBLE];
const NAME_TYPES: DuckDBType[] = [UINTEGER, VARCHAR];

const ts = (col: string) => `epoch_ms(CAST(${col} AS BIGINT))`;

/** Writes batches to a DuckDB file from the calling thread. DuckDBSink runs one in a worker. */
export class DuckDBStore implements Sink {
  readonly name: string;
  private instance: DuckDBInstance | null = null;
  private conn: DuckDBConnection | null = null;
  /** trade_names as committed: name -> id. */
  private readonly nameIds = new Map<string, number>();

  constructor(readonly path: string, private readonly logger: Logger) {
    this.name = `duckdb:${path}`;
  }

  async open(): Promise<void> {
    const { instance, conn } = await openDuckDB(this.path);
    this.instance = instance;
    this.conn = conn;
    await conn.run(DUCKDB_SCHEMA);
    await conn.run(STAGING);
    const names = await conn.runAndReadAll('SELECT id, name FROM trade_names');
    for (const [id, name] of names.getRowsJS()) this.nameIds.set(String(name), Number(id));
    this.logger.info({ path: this.path }, 'duckdb store open');
  }

  async write(batch: OutputBatch): Promise<void> {
    const conn = this.conn;
    if (!conn) throw new CoinstreamError('SINK_FAILED', `${this.name}: write before open`);
    await conn.run('BEGIN TRANSACTION');
    try {
      if (batch.windows.length > 0) await this.upsertWindows(conn, batch);
      if (batch.trends.length > 0) await this.upsertTrends(conn, batch);
      if (batch.rejected.length > 0) await this.insertRejected(conn, batch);
      const addedNames = batch.trades.length > 0 ? await this.archiveTrades(conn, batch) : [];
      await conn.run('COMMIT');
      // Only names that are committed count as known: a rolled-back batch adds none.
      for (const name of addedNames) this.nameIds.set(name, this.nameIds.size);
    } catch (err) {
      await conn.run('ROLLBACK').catch((rollbackErr: unknown) => this.logger.error({ err: rollbackErr }, 'duckdb rollback failed'));
      throw new CoinstreamError('SINK_FAILED', `${this.name}: writing batch ${batch.batchId} failed: ${(err as Error).message}`, true, { cause: err });
    }
  }

  async close(): Promise<void> {
    this.conn?.closeSync();
    this.instance?.closeSync();
    this.conn = null;
    this.instance = null;
  }

  private async upsertWindows(conn: DuckDBConnection, batch: OutputBatch): Promise<void> {
    const rows: Cell[][] = batch.windows.map((w) => [
      w.asset, w.windowStart, w.windowEnd, w.trades, w.totalVolume, w.totalAmount, w.averagePrice, w.vwap,
      w.open, w.high, w.low, w.close, w.buyVolume, w.sellVolume, w.isFinal, w.updatedAt,
    ]);
    await appendRows(conn, 'staging_windows', WINDOW_TYPES, rows);
    await conn.run(`INSERT OR REPLACE INTO trade_windows
      SELECT asset, ${ts('window_start')}, ${ts('window_end')}, CAST(trades AS BIGINT), total_volume, total_amount,
             average_price, vwap, open, high, low, close, buy_volume, sell_volume, is_final, ${ts('updated_at')}
      FROM staging_windows;
      DELETE FROM staging_windows;`);
  }

  private async upsertTrends(conn: DuckDBConnection, batch: OutputBatch): Promise<void> {
    const rows: Cell[][] = batch.trends.map((t) => [
      t.asset, t.windowStart, t.windowEnd, t.vwap, t.prevVwap, t.trend, t.avgPrice6m, t.change6mPct, t.windows6m, t.isFinal,
    ]);
    await appendRows(conn, 'staging_trends', TREND_TYPES, rows);
    await conn.run(`INSERT OR REPLACE INTO price_trends
      SELECT asset, ${ts('window_start')}, ${ts('window_end')}, vwap, prev_vwap, trend, avg_price_6m, change_6m_pct,
             CAST(windows_6m AS INTEGER), is_final
      FROM staging_trends;
      DELETE FROM staging_trends;`);
  }

  private async insertRejected(conn: DuckDBConnection, batch: OutputBatch): Promise<void> {
    const rows: Cell[][] = batch.rejected.map((r) => [r.receivedAt, r.source, r.reason, r.detail, r.raw]);
    await appendRows(conn, 'staging_rejected', REJECTED_TYPES, rows);
    await conn.run(`INSERT INTO rejected_trades SELECT ${ts('received_at')}, source, reason, detail, raw FROM staging_rejected;
      DELETE FROM staging_rejected;`);
  }

  /**
   * Appends the batch straight into trade_log. The batch's name ids are its own; they are mapped to
   * the store's ids here, and names new to the store are added in the same transaction.
   */
  private async archiveTrades(conn: DuckDBConnection, batch: OutputBatch): Promise<string[]> {
    const t = batch.trades;
    const added: string[] = [];
    const toStore = new Uint32Array(t.names.length);
    t.names.forEach((name, i) => {
      let id = this.nameIds.get(name);
      if (id === undefined) {
        id = this.nameIds.size + added.length;
        added.push(name);
      }
      toStore[i] = id;
    });
    if (added.length > 0) {
      const first = this.nameIds.size;
      await appendRows(conn, 'trade_names', NAME_TYPES, added.map((name, i) => [first + i, name]));
    }
    // Store ids for this batch's ids (identity for a store that already knew the same names in order).
    const exchange = mapIds(t.exchange, t.length, toStore);
    const base = mapIds(t.base, t.length, toStore);
    const quote = mapIds(t.quote, t.length, toStore);
    const appender = await conn.createAppender('trade_log');
    try {
      for (let from = 0; from < t.length; from += CHUNK_ROWS) {
        const n = Math.min(CHUNK_ROWS, t.length - from);
        const chunk = DuckDBDataChunk.create(TRADE_LOG_TYPES, n);
        // Fixed-width columns are copied into DuckDB's vectors in one call each; received_at_ms keeps
        // NaN for "no receive time" (the view reads it as NULL).
        const columns = [exchange, base, quote, t.isBuy, t.price, t.volume, t.timestamp, t.priceUsd];
        columns.forEach((column, i) => copyColumn(chunk, i, column, from, n));
        copyColumn(chunk, 9, t.receivedAt, from, n);
        if (t.tradeId) {
          const tradeId = chunk.getColumnVector(8) as unknown as { setItem(i: number, v: string | null): void; flush(): void };
          for (let i = 0; i < n; i++) tradeId.setItem(i, t.tradeId[from + i]);
          tradeId.flush();
        } else {
          setAllNull(chunk, 8, n);
        }
        appender.appendDataChunk(chunk);
      }
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
    return added;
  }
}

function mapIds(ids: Uint32Array, length: number, toStore: Uint32Array): Uint32Array {
  if (toStore.every((storeId, batchId) => storeId === batchId)) return ids;
  const out = new Uint32Array(length);
  for (let i = 0; i < length; i++) out[i] = toStore[ids[i]];
  return out;
}

type FixedWidth = Uint8Array | Uint32Array | Float64Array;

/** Copies rows [from, from + n) of a typed array into column i of a fresh chunk (all rows valid). */
function copyColumn(chunk: DuckDBDataChunk, i: number, column: FixedWidth, from: number, n: number): void {
  const width = column.BYTES_PER_ELEMENT;
  duckdb.copy_data_to_vector(duckdb.data_chunk_get_vector(chunk.chunk, i), 0, column.buffer as ArrayBuffer, column.byteOffset + from * width, n * width);
}

/** Marks rows [0, n) of column i NULL with one copy of an all-zero validity mask. */
function setAllNull(chunk: DuckDBDataChunk, i: number, n: number): void {
  const vector = duckdb.data_chunk_get_vector(chunk.chunk, i);
  duckdb.vector_ensure_validity_writable(vector);
  const words = Math.ceil(n / 64);
  duckdb.copy_data_to_vector_validity(vector, 0, new ArrayBuffer(words * 8), 0, words * 8);
}

/** Appends rows to a table through data chunks (exact values, no SQL text). */
async function appendRows(conn: DuckDBConnection, table: string, types: DuckDBType[], rows: Cell[][]): Promise<void> {
  const appender: DuckDBAppender = await conn.createAppender(table);
  try {
    for (let from = 0; from < rows.length; from += CHUNK_ROWS) {
      const slice = rows.slice(from, from + CHUNK_ROWS);
      const chunk = DuckDBDataChunk.create(types, slice.length);
      chunk.setColumns(types.map((_, col) => slice.map((r) => r[col])));
      appender.appendDataChunk(chunk);
    }
    appender.flushSync();
  } finally {
    appender.closeSync();
  }
}
