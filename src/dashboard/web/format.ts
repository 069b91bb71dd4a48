// Number and time formatting for the page. Every function returns plain text (the caller puts it in
// textContent); a missing or non-finite value shows as an en dash.

const DASH = '\u2013';
const formatters = new Map<string, Intl.NumberFormat>();

function formatter(min: number, max: number): Intl.NumberFormat {
  const key = `${min}/${max}`;
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.NumberFormat('en-US', { minimumFractionDigits: min, maximumFractionDigits: max });
    formatters.set(key, f);
  }
  return f;
}

function finite(v: number | null | undefined): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** Decimals that show a price of this size usefully (BTC: 2, a $0.07 coin: 6). */
export function priceDecimals(v: number): number {
  const a = Math.abs(v);
  if (a >= 1000) return 2;
  if (a >= 1) return 4;
  if (a >= 0.01) return 6;
  return 8;
}

export function fmtPrice(v: number | null | undefined): string {
  if (!finite(v)) return DASH;
  const d = priceDecimals(v);
  return formatter(Math.min(2, d), d).format(v);
}

/** A price with exactly `decimals` decimals (table columns line up). */
export function fmtFixed(v: number | null | undefined, decimals: number): string {
  return finite(v) ? formatter(decimals, decimals).format(v) : DASH;
}

export function fmtUsd(v: number | null | undefined): string {
  return finite(v) ? `$${fmtPrice(v)}` : DASH;
}

export function fmtVolume(v: number | null | undefined): string {
  if (!finite(v)) return DASH;
  return formatter(0, Math.abs(v) >= 1000 ? 2 : 4).format(v);
}

export function fmtInt(v: number | null | undefined): string {
  return finite(v) ? formatter(0, 0).format(v) : DASH;
}

export function fmtRate(v: number | null | undefined): string {
  return finite(v) ? formatter(0, v >= 100 ? 0 : 1).format(v) : DASH;
}

export function fmtPct(v: number | null | undefined): string {
  if (!finite(v)) return DASH;
  const s = formatter(2, 2).format(Math.abs(v));
  return `${v > 0 ? '+' : v < 0 ? '\u2212' : '\u00b1'}${s}%`;
}

/** A span as --trend-span writes it: 6m, 90s, 1h, 1h30m. */
export function fmtSpan(ms: number): string {
  const parts: [number, string][] = [[86_400_000, 'd'], [3_600_000, 'h'], [60_000, 'm'], [1_000, 's'], [1, 'ms']];
  let left = ms;
  let out = '';
  for (const [unit, name] of parts) {
    if (left >= unit) {
      out += `${Math.floor(left / unit)}${name}`;
      left %= unit;
    }
  }
  return out || '0s';
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** HH:MM:SS in UTC (windows are aligned in UTC, and the chart's axis is UTC). */
export function fmtTime(ms: number | null | undefined): string {
  if (!finite(ms)) return DASH;
  const d = new Date(ms);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

/** HH:MM in UTC when the time is on a whole minute, else HH:MM:SS. */
export function fmtClock(ms: number | null | undefined): string {
  if (!finite(ms)) return DASH;
  const s = fmtTime(ms);
  return ms % 60_000 === 0 ? s.slice(0, 5) : s;
}

/** YYYY-MM-DD HH:MM:SS UTC. */
export function fmtDateTime(ms: number | null | undefined): string {
  if (!finite(ms)) return DASH;
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${fmtTime(ms)} UTC`;
}
