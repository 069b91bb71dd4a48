// A batch as the DuckDB store writes it: window and trend rows turned into columns on the pipeline's
// thread, so that only typed arrays cross to the worker. This file loads no DuckDB: the main thread
// imports it, and DuckDB's native library is loaded by the worker alone.
import type { TrendResult, WindowResult } from '../../engine/contract.js';
import type { RejectedTrade } from '../../core/trade.js';
import type { BatchProgress, OutputBatch } from '../contract.js';
import type { TradeBatch } from '../contract.js';

/** One column of rows, in a DuckDB type (see columns.ts for how each is appended). */
export type Column =
  /** NaN is stored as NULL when `nanIsNull`, else as NaN. */
  | { kind: 'double'; values: Float64Array; nanIsNull?: boolean }
  /** Epoch milliseconds (whole numbers) stored as a TIMESTAMP; NaN as NULL when `nanIsNull`. */
  | { kind: 'timestamp'; values: Float64Array; nanIsNull?: boolean }
  /** Whole numbers stored as a BIGINT. */
  | { kind: 'bigint'; values: Float64Array }
  /** Whole numbers stored as an INTEGER. */
  | { kind: 'integer'; values: Float64Array }
  | { kind: 'uinteger'; values: Uint32Array }
  /** 1 = true, 0 = false. */
  | { kind: 'boolean'; values: Uint8Array }
  /** null: every row NULL. */
  | { kind: 'varchar'; values: readonly (string | null)[] | null };

/** Whether a column's values are a typed array (every kind but varchar). */
export const isTyped = (values: Column['values']): values is Float64Array | Uint32Array | Uint8Array => ArrayBuffer.isView(values);

/**
 * Window or trend rows as the store writes them: by column, in the table's column order, with the key
 * and is_final also at hand. Built on the pipeline's thread (see toStoreBatch), so that only typed
 * arrays cross to the worker instead of thousands of objects to serialise and rebuild.
 */
export interface KeyedColumns {
  length: number;
  asset: string[];
  windowStart: Float64Array;
  windowEnd: Float64Array;
  isFinal: Uint8Array;
  columns: Column[];
}

/** A batch as the store writes it. */
export interface StoreBatch {
  batchId: number;
  windows: KeyedColumns;
  trends: KeyedColumns;
  rejected: RejectedTrade[];
  trades: TradeBatch;
  progress?: BatchProgress;
}

/** Window and trend rows to columns; the trades are already columns. */
export function toStoreBatch(batch: OutputBatch): StoreBatch {
  return { batchId: batch.batchId, windows: windowColumns(batch.windows), trends: trendColumns(batch.trends), rejected: batch.rejected, trades: batch.trades, progress: batch.progress };
}

/** The buffers of a store batch that the worker can take over instead of copying (not the shared trade columns). */
export function transferables(batch: StoreBatch): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const table of [batch.windows, batch.trends]) {
    for (const column of table.columns) {
      if (isTyped(column.values) && column.values.buffer instanceof ArrayBuffer) out.push(column.values.buffer);
    }
  }
  return out;
}

/**
 * A batch's trades as the columns of a trade log: key id, price, volume, timestamp, price_usd,
 * trade_id, received_at (NaN as NULL). `keyIds` maps the batch's key indexes to the store's ids.
 */
export function tradeLogColumns(t: TradeBatch, keyIds: Uint32Array = t.key): Column[] {
  return [
    { kind: 'uinteger', values: keyIds },
    { kind: 'double', values: t.price },
    { kind: 'double', values: t.volume },
    { kind: 'timestamp', values: t.timestamp },
    { kind: 'double', values: t.priceUsd },
    { kind: 'varchar', values: t.tradeId },
    { kind: 'timestamp', values: t.receivedAt, nanIsNull: true },
  ];
}

/** Numbers of a row field as a column; null (a bug upstream) becomes NaN and so NULL, which NOT NULL refuses. */
export function numbers<T>(rows: T[], field: (row: T) => number | null): Float64Array {
  const out = new Float64Array(rows.length);
  for (let i = 0; i < rows.length; i++) out[i] = field(rows[i]) ?? NaN;
  return out;
}

export function windowColumns(rows: WindowResult[]): KeyedColumns {
  const d = (field: (w: WindowResult) => number): Column => ({ kind: 'double', values: numbers(rows, field), nanIsNull: true });
  const key = keyColumns(rows);
  return { ...key, columns: [
    { kind: 'varchar', values: key.asset },
    { kind: 'timestamp', values: key.windowStart },
    { kind: 'timestamp', values: key.windowEnd },
    { kind: 'bigint', values: numbers(rows, (w) => w.trades) },
    d((w) => w.totalVolume), d((w) => w.totalAmount), d((w) => w.averagePrice), d((w) => w.vwap),
    d((w) => w.open), d((w) => w.high), d((w) => w.low), d((w) => w.close), d((w) => w.buyVolume), d((w) => w.sellVolume),
    { kind: 'boolean', values: key.isFinal },
    { kind: 'timestamp', values: numbers(rows, (w) => w.updatedAt) },
  ] };
}

export function trendColumns(rows: TrendResult[]): KeyedColumns {
  const d = (field: (t: TrendResult) => number | null): Column => ({ kind: 'double', values: numbers(rows, field), nanIsNull: true });
  const key = keyColumns(rows);
  return { ...key, columns: [
    { kind: 'varchar', values: key.asset },
    { kind: 'timestamp', values: key.windowStart },
    { kind: 'timestamp', values: key.windowEnd },
    d((t) => t.vwap), d((t) => t.prevVwap),
    { kind: 'varchar', values: rows.map((t) => t.trend) },
    d((t) => t.avgPrice6m), d((t) => t.change6mPct),
    { kind: 'integer', values: numbers(rows, (t) => t.windows6m) },
    { kind: 'boolean', values: key.isFinal },
  ] };
}

function keyColumns(rows: (WindowResult | TrendResult)[]): Omit<KeyedColumns, 'columns'> {
  return {
    length: rows.length,
    asset: rows.map((r) => r.asset),
    windowStart: numbers(rows, (r) => r.windowStart),
    windowEnd: numbers(rows, (r) => r.windowEnd),
    isFinal: Uint8Array.from(rows, (r) => (r.isFinal ? 1 : 0)),
  };
}

