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
  | { kind: 'varchar'; values: readonly (string | null)[] | null }
  /** VARCHAR, row i holding values[ids[i]], NULL where ids[i] is NO_STRING: few distinct strings (assets, trends), no string per row. */
  | { kind: 'dictionary'; ids: Uint32Array; values: readonly string[] };

/** A dictionary column's id for NULL. */
export const NO_STRING = 0xffffffff;

/** Whether a column's values are a typed array (every kind but varchar). */
export const isTyped = (values: Column['values']): values is Float64Array | Uint32Array | Uint8Array => ArrayBuffer.isView(values);

/**
 * A string column as ids into its distinct values, built row by row: rows repeat a few values (an
 * asset per window, a trend direction), and a copy of each string per row crossing to the DuckDB
 * thread cost it deserialising, collecting and a look-up per row.
 */
export class Dictionary {
  readonly ids: Uint32Array;
  readonly values: string[] = [];
  private readonly idOf = new Map<string, number>();
  private last: string | null = null;
  private lastId = NO_STRING;

  constructor(length: number) {
    this.ids = new Uint32Array(length);
  }

  set(i: number, value: string | null): void {
    if (value !== this.last) {
      this.last = value;
      this.lastId = value === null ? NO_STRING : (this.idOf.get(value) ?? this.add(value));
    }
    this.ids[i] = this.lastId;
  }

  column(): Column {
    return { kind: 'dictionary', ids: this.ids, values: this.values };
  }

  /** The ids and values alone (what crosses to the DuckDB thread; not the look-up map). */
  plain(): { ids: Uint32Array; values: readonly string[] } {
    return { ids: this.ids, values: this.values };
  }

  private add(value: string): number {
    const id = this.values.length;
    this.values.push(value);
    this.idOf.set(value, id);
    return id;
  }
}

/**
 * Window or trend rows as the store writes them: by column, in the table's column order, with the key
 * and is_final also at hand. Built on the pipeline's thread (see toStoreBatch), so that only typed
 * arrays cross to the worker instead of thousands of objects to serialise and rebuild.
 */
export interface KeyedColumns {
  length: number;
  /** Row i's asset is asset.values[asset.ids[i]]. */
  asset: { ids: Uint32Array; values: readonly string[] };
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
  // Once each: several double columns are views of one buffer.
  const out = new Set<ArrayBuffer>();
  for (const table of [batch.windows, batch.trends]) {
    for (const column of table.columns) {
      const values = column.kind === 'dictionary' ? column.ids : column.values;
      if (isTyped(values) && values.buffer instanceof ArrayBuffer) out.add(values.buffer);
    }
  }
  return [...out];
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

/**
 * Window rows as columns, in one pass over the rows with every field read by name: a closure per
 * field (one map over the rows per column) made each field read a call through a megamorphic site,
 * ~0.1 s per million rows on the pipeline's thread.
 */
export function windowColumns(rows: WindowResult[]): KeyedColumns {
  const n = rows.length;
  const keys = new KeyRows(n);
  const trades = new Float64Array(n);
  const updatedAt = new Float64Array(n);
  // total_volume .. sell_volume, column after column in one buffer (one allocation, one transfer)
  const doubles = new Float64Array(n * 10);
  copyWindowFields(rows, keys, trades, updatedAt, doubles);
  return keys.keyed([
    { kind: 'bigint', values: trades },
    ...slices(doubles, n, 10).map(double),
    { kind: 'boolean', values: keys.isFinal },
    { kind: 'timestamp', values: updatedAt },
  ]);
}

/** Trend rows as columns, in one pass (see windowColumns). A null prev_vwap becomes NaN, stored as NULL. */
export function trendColumns(rows: TrendResult[]): KeyedColumns {
  const n = rows.length;
  const keys = new KeyRows(n);
  const trend = new Dictionary(n);
  const windows6m = new Float64Array(n);
  // vwap, prev_vwap, avg_price_6m, change_6m_pct
  const doubles = new Float64Array(n * 4);
  copyTrendFields(rows, keys, trend, windows6m, doubles);
  const [vwap, prevVwap, avgPrice6m, change6mPct] = slices(doubles, n, 4);
  return keys.keyed([
    double(vwap), double(prevVwap),
    trend.column(),
    double(avgPrice6m), double(change6mPct),
    { kind: 'integer', values: windows6m },
    { kind: 'boolean', values: keys.isFinal },
  ]);
}

/**
 * The key of window or trend rows (asset, window_start, window_end) and is_final, filled row by row.
 * A class, not an object literal: literals whose first properties match share V8's hidden classes,
 * and one holding typed arrays where others hold numbers had them generalised during a run.
 */
class KeyRows {
  readonly asset: Dictionary;
  readonly windowStart: Float64Array;
  readonly windowEnd: Float64Array;
  readonly isFinal: Uint8Array;

  constructor(readonly length: number) {
    this.asset = new Dictionary(length);
    this.windowStart = new Float64Array(length);
    this.windowEnd = new Float64Array(length);
    this.isFinal = new Uint8Array(length);
  }

  /** Row i's key and finality; values, not the row, so that each copy loop reads rows of one shape. */
  set(i: number, asset: string, windowStart: number | null, windowEnd: number | null, isFinal: boolean): void {
    this.asset.set(i, asset);
    this.windowStart[i] = orNaN(windowStart);
    this.windowEnd[i] = orNaN(windowEnd);
    this.isFinal[i] = isFinal ? 1 : 0;
  }

  /** The rows as the store writes them: the key columns first, then `rest` in the table's order. */
  keyed(rest: Column[]): KeyedColumns {
    const { length, asset, windowStart, windowEnd, isFinal } = this;
    return { length, asset: asset.plain(), windowStart, windowEnd, isFinal, columns: [
      asset.column(),
      { kind: 'timestamp', values: windowStart },
      { kind: 'timestamp', values: windowEnd },
      ...rest,
    ] };
  }
}

// The copy loops are functions of their own that do nothing after the loop: V8 compiles a hot loop
// while it runs (on-stack replacement) and enters that code again on the next batch, and work after
// the loop that the code had not seen sent it back to the interpreter, then to a new compile (seen:
// windowColumns compiled 7 times and trendColumns 5 times in a run of a million trades).

/** Row i's fields into the arrays; doubles holds total_volume .. sell_volume, n rows each. */
function copyWindowFields(rows: WindowResult[], keys: KeyRows, trades: Float64Array, updatedAt: Float64Array, doubles: Float64Array): void {
  const n = rows.length;
  for (let i = 0; i < n; i++) {
    const w = rows[i];
    keys.set(i, w.asset, w.windowStart, w.windowEnd, w.isFinal);
    trades[i] = orNaN(w.trades);
    doubles[i] = orNaN(w.totalVolume);
    doubles[n + i] = orNaN(w.totalAmount);
    doubles[2 * n + i] = orNaN(w.averagePrice);
    doubles[3 * n + i] = orNaN(w.vwap);
    doubles[4 * n + i] = orNaN(w.open);
    doubles[5 * n + i] = orNaN(w.high);
    doubles[6 * n + i] = orNaN(w.low);
    doubles[7 * n + i] = orNaN(w.close);
    doubles[8 * n + i] = orNaN(w.buyVolume);
    doubles[9 * n + i] = orNaN(w.sellVolume);
    updatedAt[i] = orNaN(w.updatedAt);
  }
}

/** Row i's fields into the arrays; doubles holds vwap, prev_vwap, avg_price_6m, change_6m_pct, n rows each. */
function copyTrendFields(rows: TrendResult[], keys: KeyRows, trend: Dictionary, windows6m: Float64Array, doubles: Float64Array): void {
  const n = rows.length;
  for (let i = 0; i < n; i++) {
    const t = rows[i];
    keys.set(i, t.asset, t.windowStart, t.windowEnd, t.isFinal);
    trend.set(i, t.trend);
    doubles[i] = orNaN(t.vwap);
    doubles[n + i] = orNaN(t.prevVwap);
    doubles[2 * n + i] = orNaN(t.avgPrice6m);
    doubles[3 * n + i] = orNaN(t.change6mPct);
    windows6m[i] = orNaN(t.windows6m);
  }
}

/** The k columns of n rows each that `doubles` holds, column after column. */
function slices(doubles: Float64Array, n: number, k: number): Float64Array[] {
  return Array.from({ length: k }, (_, c) => doubles.subarray(c * n, (c + 1) * n));
}

/** A double column of window or trend values: NaN (no value) is stored as NULL. */
const double = (values: Float64Array): Column => ({ kind: 'double', values, nanIsNull: true });

/** A null where a number belongs (a bug upstream) becomes NaN, and so NULL, which NOT NULL refuses. */
const orNaN = (x: number | null): number => x ?? NaN;
