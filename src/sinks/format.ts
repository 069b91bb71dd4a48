// Readable numbers and tables for the console sink and `coinstream query`.

/** Prices: cents for big numbers, more digits for small ones (a 0.00001305 BTC price must not print as 0.00). */
export function formatPrice(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '';
  const abs = Math.abs(v);
  if (abs >= 1000) return v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  if (abs >= 1) return v.toFixed(4);
  if (abs === 0) return '0';
  return v.toPrecision(4);
}

export function formatAmount(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '';
  const abs = Math.abs(v);
  if (abs >= 1000) return v.toLocaleString('en-US', { maximumFractionDigits: 2 });
  if (abs >= 1) return v.toFixed(4);
  if (abs === 0) return '0';
  return v.toPrecision(4);
}

export function formatPct(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '';
  return `${v >= 0 ? '+' : ''}${v.toFixed(3)}%`;
}

/** `2019-07-01 00:01:00.000` (UTC). */
export function formatTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

export interface Column<R> {
  header: string;
  value: (row: R) => string;
  /** Numbers align right. */
  right?: boolean;
}

/** A table in the style of Spark's console sink: +---+ borders, one row per line. */
export function renderTable<R>(columns: Column<R>[], rows: readonly R[]): string {
  const cells = rows.map((r) => columns.map((c) => c.value(r)));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i].length)));
  const rule = '+' + widths.map((w) => '-'.repeat(w + 2)).join('+') + '+';
  const line = (values: string[]) =>
    '|' + values.map((v, i) => ' ' + (columns[i].right ? v.padStart(widths[i]) : v.padEnd(widths[i])) + ' ').join('|') + '|';
  return [rule, line(columns.map((c) => c.header)), rule, ...cells.map(line), rule].join('\n');
}
