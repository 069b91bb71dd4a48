// What a SQL store holds, compared with a DuckDB store (proven equal to the SQL oracle elsewhere): every
// column of trade_windows and price_trends (doubles within 1e-9 relative), and rejected_trades and
// trades as multisets, processing-time columns (received_at, updated_at) aside. Shared by the SQL
// store tests against the shared servers and against a private MariaDB.
import { expect } from 'vitest';
import { queryRows } from '../../src/sinks/duckdb/open.js';
import type { Peer, Row } from './sql-peers.js';

export interface TableCheck {
  name: string;
  /** Compared in this order; rows sorted by all of them. */
  columns: string[];
  numeric: string[];
  times: string[];
}

export const TABLES: TableCheck[] = [
  {
    name: 'trade_windows',
    columns: ['asset', 'window_start', 'window_end', 'trades', 'total_volume', 'total_amount', 'average_price', 'vwap', 'open', 'high', 'low', 'close', 'buy_volume', 'sell_volume', 'is_final'],
    numeric: ['trades', 'total_volume', 'total_amount', 'average_price', 'vwap', 'open', 'high', 'low', 'close', 'buy_volume', 'sell_volume', 'is_final'],
    times: ['window_start', 'window_end'],
  },
  {
    name: 'price_trends',
    columns: ['asset', 'window_start', 'window_end', 'vwap', 'prev_vwap', 'trend', 'avg_price_6m', 'change_6m_pct', 'windows_6m', 'is_final'],
    numeric: ['vwap', 'prev_vwap', 'avg_price_6m', 'change_6m_pct', 'windows_6m', 'is_final'],
    times: ['window_start', 'window_end'],
  },
  { name: 'rejected_trades', columns: ['source', 'reason', 'detail', 'raw'], numeric: [], times: [] },
  {
    name: 'trades',
    columns: ['exchange', 'base', 'quote', 'direction', 'price', 'volume', 'timestamp', 'price_usd', 'trade_id'],
    numeric: ['price', 'volume', 'price_usd'],
    times: ['timestamp'],
  },
];

/** SELECT of a table's compared columns, times through `ms`, numbers through `num`, names quoted by `q`. */
function selectOf(t: TableCheck, ms: (c: string) => string, num: (c: string) => string, q: (c: string) => string): string {
  const cols = t.columns.map((c) => (t.times.includes(c) ? `${ms(q(c))} AS ${q(c)}` : t.numeric.includes(c) ? `${num(q(c))} AS ${q(c)}` : q(c)));
  return `SELECT ${cols.join(', ')} FROM ${t.name}`;
}

const duckSelect = (t: TableCheck) => selectOf(t, (c) => `epoch_ms(${c})::DOUBLE`, (c) => `${c}::DOUBLE`, (c) => `"${c}"`);

function normalise(t: TableCheck, rows: Row[]): unknown[][] {
  const out = rows.map((r) => t.columns.map((c) => {
    const v = r[c];
    if (v === null || v === undefined) return null;
    if (t.numeric.includes(c) || t.times.includes(c)) return typeof v === 'boolean' ? Number(v) : Number(v);
    return String(v);
  }));
  const key = (row: unknown[]) => JSON.stringify(row.map((v) => (typeof v === 'number' ? v.toPrecision(12) : v)));
  return out.map((row) => ({ row, k: key(row) })).sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0)).map((x) => x.row);
}

const close = (a: unknown, b: unknown) =>
  typeof a === 'number' && typeof b === 'number' ? a === b || Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b)) : a === b;

/**
 * Every compared table of the SQL database equals the DuckDB store's. `rows` reads the database
 * (default: the peer's own connection).
 */
export async function expectEqualToDuckDB(peer: Peer, db: string, duckdb: string, what: string, rows: (db: string, sql: string) => Promise<Row[]> = (d, s) => peer.rows(d, s)): Promise<void> {
  for (const t of TABLES) {
    const want = normalise(t, await queryRows(duckdb, duckSelect(t), { readOnly: true }));
    const got = normalise(t, await rows(db, peer.select(t)));
    expect(got.length, `${what}: ${t.name} has ${got.length} rows, the DuckDB store ${want.length}`).toBe(want.length);
    expect(want.length, `${what}: ${t.name} is empty`).toBeGreaterThan(0);
    for (let i = 0; i < want.length; i++) {
      const same = want[i].every((v, j) => close(v, got[i][j]));
      if (!same) expect(Object.fromEntries(t.columns.map((c, j) => [c, got[i][j]])), `${what}: ${t.name}, row ${i} (sorted) differs`).toEqual(Object.fromEntries(t.columns.map((c, j) => [c, want[i][j]])));
    }
  }
}
