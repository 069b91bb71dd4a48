// The console sink, like Spark's: a `Batch: N` header, then a table of the rows that changed.
import type { Writable } from 'node:stream';
import type { Logger } from '../core/logger.js';
import type { TrendResult, WindowResult } from '../engine/contract.js';
import type { OutputBatch, PriceQuote, Sink } from './contract.js';
import { formatAmount, formatPct, formatPrice, formatTime, renderTable, type Column } from './format.js';

export interface WindowRow {
  window: WindowResult;
  trend: TrendResult | undefined;
}

export const WINDOW_COLUMNS: Column<WindowRow>[] = [
  { header: 'asset', value: (r) => r.window.asset },
  { header: 'window_start', value: (r) => formatTime(r.window.windowStart) },
  { header: 'window_end', value: (r) => formatTime(r.window.windowEnd).slice(11) },
  { header: 'trades', value: (r) => String(r.window.trades), right: true },
  { header: 'volume', value: (r) => formatAmount(r.window.totalVolume), right: true },
  { header: 'vwap', value: (r) => formatPrice(r.window.vwap), right: true },
  { header: 'open', value: (r) => formatPrice(r.window.open), right: true },
  { header: 'high', value: (r) => formatPrice(r.window.high), right: true },
  { header: 'low', value: (r) => formatPrice(r.window.low), right: true },
  { header: 'close', value: (r) => formatPrice(r.window.close), right: true },
  { header: 'buy_vol', value: (r) => formatAmount(r.window.buyVolume), right: true },
  { header: 'sell_vol', value: (r) => formatAmount(r.window.sellVolume), right: true },
  { header: 'trend', value: (r) => r.trend?.trend ?? '' },
  { header: 'chg_6m', value: (r) => formatPct(r.trend?.change6mPct), right: true },
  { header: 'final', value: (r) => (r.window.isFinal ? 'yes' : '') },
];

/** The prices view: latest USD price per asset (CoinCap prices), not trades. */
const PRICE_COLUMNS: Column<PriceQuote>[] = [
  { header: 'asset', value: (p) => p.asset },
  { header: 'price_usd', value: (p) => formatPrice(p.priceUsd), right: true },
  { header: 'received_at', value: (p) => formatTime(p.at) },
  { header: 'source', value: (p) => p.source },
];

function key(asset: string, start: number, end: number): string {
  return `${asset}\u0000${start}\u0000${end}`;
}

/** Pairs each window with its trend row (a trend can change without its window changing). */
export function joinRows(windows: readonly WindowResult[], trends: readonly TrendResult[]): WindowRow[] {
  const trendByKey = new Map(trends.map((t) => [key(t.asset, t.windowStart, t.windowEnd), t]));
  return [...windows]
    .sort((a, b) => a.asset.localeCompare(b.asset) || a.windowStart - b.windowStart || a.windowEnd - b.windowEnd)
    .map((w) => ({ window: w, trend: trendByKey.get(key(w.asset, w.windowStart, w.windowEnd)) }));
}

/** Rejections printed per batch when no store keeps them. */
const SHOWN_REJECTIONS = 10;

/** A detail as one line of plain text: control characters (from the input) escaped, never sent to the terminal. */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export class ConsoleSink implements Sink {
  readonly name = 'console';
  /** Set once the output failed (`| head` closed the pipe): the console is a view, the run goes on without it. */
  private closedBecause: string | null = null;
  /**
   * Whether a store beside the console keeps rejections in rejected_trades. Without one, the console
   * prints them, since nothing else will (it said "kept in rejected_trades" of a table that was not).
   */
  keptElsewhere = true;
  /** Called once when the output is gone; set where the console is all the run has to show. */
  onReaderGone: (() => void) | null = null;

  constructor(private readonly out: Writable = process.stdout, private readonly logger?: Logger) {}

  async open(): Promise<void> {
    // Without a listener, an EPIPE on stdout is an uncaught exception that ends the whole run.
    this.out.on('error', this.onError);
  }

  private readonly onError = (err: NodeJS.ErrnoException): void => {
    if (this.closedBecause !== null) return;
    this.closedBecause = err.code ?? err.message;
    const why = err.code === 'EPIPE' ? 'the reader closed it' : err.message;
    // A reader that went away is a normal end (`| head`); any other failure loses output (the exit says so).
    const level = err.code === 'EPIPE' ? 'info' : 'warn';
    if (this.onReaderGone) {
      this.logger?.[level]({ sink: this.name, err: this.closedBecause }, `console output stopped (${why}); it was the run's only output, so the run stops`);
      this.onReaderGone();
      return;
    }
    this.logger?.[level]({ sink: this.name, err: this.closedBecause }, `console output stopped (${why}); the stores go on`);
  };

  async write(batch: OutputBatch): Promise<void> {
    const rule = '-------------------------------------------';
    const parts = [rule, `Batch: ${batch.batchId}`, rule];
    const rows = joinRows(batch.windows, batch.trends);
    if (rows.length > 0 || batch.prices.length === 0) parts.push(rows.length > 0 ? renderTable(WINDOW_COLUMNS, rows) : '(no window changed)');
    if (batch.prices.length > 0) {
      const sorted = [...batch.prices].sort((a, b) => a.asset.localeCompare(b.asset));
      parts.push(renderTable(PRICE_COLUMNS, sorted));
    }
    const trendOnly = batch.trends.length - rows.filter((r) => r.trend).length;
    if (trendOnly > 0) parts.push(`${trendOnly} trend row(s) changed without their window`);
    if (batch.rejected.length > 0) {
      const byReason = new Map<string, number>();
      for (const r of batch.rejected) byReason.set(r.reason, (byReason.get(r.reason) ?? 0) + 1);
      const counts = `rejected: ${batch.rejected.length} (${[...byReason].map(([k, v]) => `${k} ${v}`).join(', ')})`;
      if (this.keptElsewhere) parts.push(`${counts}; kept in rejected_trades`);
      else {
        parts.push(`${counts}; no store keeps them (add --sink duckdb:PATH to keep them):`);
        for (const r of batch.rejected.slice(0, SHOWN_REJECTIONS)) parts.push(`  ${r.reason}: ${r.source}: ${printable(r.detail)}`);
        if (batch.rejected.length > SHOWN_REJECTIONS) parts.push(`  ... and ${batch.rejected.length - SHOWN_REJECTIONS} more`);
      }
    }
    const wm = Number.isFinite(batch.watermark) ? formatTime(batch.watermark) : batch.watermark > 0 ? 'end of input' : 'none yet';
    parts.push(`watermark: ${wm}${batch.final ? ' (last batch)' : ''}`, '');
    if (this.closedBecause !== null) return;
    await new Promise<void>((resolve) =>
      this.out.write(parts.join('\n') + '\n', (err) => {
        if (err) this.onError(err);
        resolve();
      }),
    );
  }

  async close(): Promise<void> {
    this.out.off('error', this.onError);
  }
}
