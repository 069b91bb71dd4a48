// The embedded store: DuckDB. One transaction per trigger, so a crash leaves the store at a trigger
// boundary, never half a batch. Rows go in through DuckDB's appender (exact doubles, no SQL text
// parsing) into temporary staging tables, then one INSERT OR REPLACE per table upserts by key.
//
// The trade archive is the hot path (every accepted trade): its low-cardinality strings (exchange,
// base, quote) travel as small integer ids and are turned back into names inside DuckDB, because
// appending a VARCHAR costs about ten times as much as a number (measured: 4 VARCHAR columns 750 ms,
// 4 integer columns 155 ms per million rows).

import { BOOLEAN, DOUBLE, UINTEGER, VARCHAR, DuckDBDataChunk, type DuckDBAppender, type DuckDBConnection, type DuckDBInstance, type DuckDBType } from '@duckdb/node-api';
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
CREATE TEMP TABLE IF NOT EXISTS staging_trades (exchange_id UINTEGER, base_id UINTEGER, quote_id UINTEGER, is_buy BOOLEAN,
  price DOUBLE, volume DOUBLE, ts DOUBLE, price_usd DOUBLE, trade_id VARCHAR, received_at DOUBLE);
`;

const WINDOW_TYPES: DuckDBType[] = [VARCHAR, ...Array<DuckDBType>(13).fill(DOUBLE), BOOLEAN, DOUBLE];
const TREND_TYPES: DuckDBType[] = [VARCHAR, DOUBLE, DOUBLE, DOUBLE, DOUBLE, VARCHAR, DOUBLE, DOUBLE, DOUBLE, BOOLEAN];
const REJECTED_TYPES: DuckDBType[] = [DOUBLE, VARCHAR, VARCHAR, VARCHAR, VARCHAR];
const TRADE_TYPES: DuckDBType[] = [UINTEGER, UINTEGER, UINTEGER, BOOLEAN, DOUBLE, DOUBLE, DOUBLE, DOUBLE, VARCHAR, DOUBLE];

const ts = (col: string) => `epoch_ms(CAST(${col} AS BIGINT))`;

export class DuckDBSink implements Sink {
  readonly name: string;
  private instance: DuckDBInstance | null = null;
  private conn: DuckDBConnection | null = null;
  /** Name -> id for the trade archive's strings; the SQL that turns ids back into names is rebuilt when it grows. */
  private readonly nameIds = new Map<string, number>();
  private names: string[] = [];

  constructor(readonly path: string, private readonly logger: Logger) {
    this.name = `duckdb:${path}`;
  }

  async open(): Promise<void> {
    const { instance, conn } = await openDuckDB(this.path);
    this.instance = instance;
    this.conn = conn;
    await conn.run(DUCKDB_SCHEMA);
    await conn.run(STAGING);
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
      if (batch.trades.length > 0) await this.archiveTrades(conn, batch);
      await conn.run('COMMIT');
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

  private idOf(name: string): number {
    let id = this.nameIds.get(name);
    if (id === undefined) {
      id = this.names.length;
      this.names.push(name);
      this.nameIds.set(name, id);
    }
    return id;
  }

  private async archiveTrades(conn: DuckDBConnection, batch: OutputBatch): Promise<void> {
    const trades = batch.trades;
    const appender = await conn.createAppender('staging_trades');
    try {
      for (let from = 0; from < trades.length; from += CHUNK_ROWS) {
        const n = Math.min(CHUNK_ROWS, trades.length - from);
        const chunk = DuckDBDataChunk.create(TRADE_TYPES, n);
        const v = TRADE_TYPES.map((_, i) => chunk.getColumnVector(i) as unknown as { setItem(i: number, v: Cell): void; flush(): void });
        for (let i = 0; i < n; i++) {
          const t = trades[from + i];
          v[0].setItem(i, this.idOf(t.exchange));
          v[1].setItem(i, this.idOf(t.base));
          v[2].setItem(i, this.idOf(t.quote));
          v[3].setItem(i, t.direction === 'buy');
          v[4].setItem(i, t.price);
          v[5].setItem(i, t.volume);
          v[6].setItem(i, t.timestamp);
          v[7].setItem(i, t.priceUsd);
          v[8].setItem(i, t.tradeId ?? null);
          v[9].setItem(i, t.receivedAt ?? null);
        }
        for (const vector of v) vector.flush();
        appender.appendDataChunk(chunk);
      }
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
    // A list literal indexed by id keeps this a projection, so insertion order (arrival order) holds.
    const names = `[${this.names.map(sqlString).join(', ')}]`;
    await conn.run(`INSERT INTO trades
      SELECT ${names}[exchange_id + 1], ${names}[base_id + 1], ${names}[quote_id + 1],
             CASE WHEN is_buy THEN 'buy' ELSE 'sell' END, price, volume, ${ts('ts')}, price_usd, trade_id,
             CASE WHEN received_at IS NULL THEN NULL ELSE ${ts('received_at')} END
      FROM staging_trades;
      DELETE FROM staging_trades;`);
  }
}

function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
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
