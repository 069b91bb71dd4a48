// The tables a `delta:DIR` store writes, as DESIGN.md fixes them: the same names and columns as in
// DuckDB and the SQL stores, in Delta's types, plus a `date` partition column where partitioned.
//
// Each table turns an OutputBatch into columns to write (append mode: windows and trends only once
// final, every rejection and archived trade once). Column kinds are the DuckDB store's (store-batch.ts):
// the Parquet files are written by DuckDB from those columns.
import type { OutputBatch } from '../contract.js';
import { tradeLogColumns, trendColumns, windowColumns, type Column, type KeyedColumns } from '../duckdb/store-batch.js';

export type DeltaTableName = 'trade_windows' | 'price_trends' | 'rejected_trades' | 'trades';

export interface DeltaColumn {
  name: string;
  /** Delta's primitive type name. */
  type: 'string' | 'timestamp' | 'long' | 'integer' | 'double' | 'boolean' | 'date';
  nullable: boolean;
}

export interface DeltaTableDef {
  name: DeltaTableName;
  /** The data columns, in file order (the `date` partition column is not among them). */
  columns: DeltaColumn[];
  /** The column whose UTC date is the `date` partition value, when the table is partitioned by date. */
  dateOf: string;
}

/** Rows of one batch for one table, by column in `columns` order. */
export interface TableRows {
  length: number;
  columns: Column[];
  /** Trades only: the batch's distinct keys, which `columns[0]` (key ids) points into. */
  keys?: OutputBatch['trades']['keys'];
}

const c = (name: string, type: DeltaColumn['type'], nullable = false): DeltaColumn => ({ name, type, nullable });

export const DELTA_TABLES: Record<DeltaTableName, DeltaTableDef> = {
  trade_windows: {
    name: 'trade_windows',
    columns: [
      c('asset', 'string'), c('window_start', 'timestamp'), c('window_end', 'timestamp'), c('trades', 'long'),
      c('total_volume', 'double'), c('total_amount', 'double'), c('average_price', 'double'), c('vwap', 'double'),
      c('open', 'double'), c('high', 'double'), c('low', 'double'), c('close', 'double'),
      c('buy_volume', 'double'), c('sell_volume', 'double'), c('is_final', 'boolean'), c('updated_at', 'timestamp'),
    ],
    dateOf: 'window_start',
  },
  price_trends: {
    name: 'price_trends',
    columns: [
      c('asset', 'string'), c('window_start', 'timestamp'), c('window_end', 'timestamp'), c('vwap', 'double'),
      c('prev_vwap', 'double', true), c('trend', 'string', true), c('avg_price_6m', 'double'), c('change_6m_pct', 'double'),
      c('windows_6m', 'integer'), c('is_final', 'boolean'),
    ],
    dateOf: 'window_start',
  },
  rejected_trades: {
    name: 'rejected_trades',
    columns: [c('received_at', 'timestamp'), c('source', 'string'), c('reason', 'string'), c('detail', 'string'), c('raw', 'string')],
    dateOf: 'received_at',
  },
  // The trades archive: the message's columns; key ids are resolved to exchange/base/quote/direction
  // when the file is written (see parquet.ts).
  trades: {
    name: 'trades',
    columns: [
      c('exchange', 'string'), c('base', 'string'), c('quote', 'string'), c('direction', 'string'),
      c('price', 'double'), c('volume', 'double'), c('timestamp', 'timestamp'), c('price_usd', 'double'),
      c('trade_id', 'string', true), c('received_at', 'timestamp', true),
    ],
    dateOf: 'timestamp',
  },
};

/** The Spark schema string of a table (metaData.schemaString). */
export function schemaString(def: DeltaTableDef, partitioned: boolean): string {
  const fields = def.columns.map((col) => ({ name: col.name, type: col.type, nullable: col.nullable, metadata: {} }));
  if (partitioned) fields.push({ name: 'date', type: 'date', nullable: true, metadata: {} });
  return JSON.stringify({ type: 'struct', fields });
}

/**
 * What a batch appends to the table. Windows and trends: the rows that are final and end after
 * `writtenThrough` (the watermark of the table's last committed batch: every window ending at or before
 * it became final in a batch the table already holds, so it is never appended twice).
 */
export function rowsOf(def: DeltaTableDef, batch: OutputBatch, writtenThrough: number): TableRows | null {
  switch (def.name) {
    case 'trade_windows':
    case 'price_trends': {
      const keyed: KeyedColumns = def.name === 'trade_windows' ? windowColumns(batch.windows.filter((w) => w.isFinal && w.windowEnd > writtenThrough)) : trendColumns(batch.trends.filter((t) => t.isFinal && t.windowEnd > writtenThrough));
      return keyed.length === 0 ? null : { length: keyed.length, columns: keyed.columns };
    }
    case 'rejected_trades': {
      const rows = batch.rejected;
      if (rows.length === 0) return null;
      return {
        length: rows.length,
        columns: [
          { kind: 'timestamp', values: Float64Array.from(rows, (r) => r.receivedAt) },
          { kind: 'varchar', values: rows.map((r) => r.source) },
          { kind: 'varchar', values: rows.map((r) => r.reason) },
          { kind: 'varchar', values: rows.map((r) => r.detail) },
          { kind: 'varchar', values: rows.map((r) => r.raw) },
        ],
      };
    }
    case 'trades': {
      const t = batch.trades;
      if (t.length === 0) return null;
      return { length: t.length, keys: t.keys, columns: tradeLogColumns(t) };
    }
  }
}
