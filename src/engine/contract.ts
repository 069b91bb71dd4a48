// What the engine takes and gives. Sinks and the dashboard import only this file.

export interface EngineConfig {
  /** Window size, ms. */
  windowMs: number;
  /** Window slide, ms (equal to windowMs for tumbling windows). */
  slideMs: number;
  /** Windows start at offsetMs + k * slideMs from the Unix epoch. */
  offsetMs: number;
  /** Watermark = max event time seen - watermarkMs. */
  watermarkMs: number;
  /** Processing-time trigger interval, ms. */
  triggerMs: number;
  /** Span of the price trend, ms (default 6 minutes). */
  trendSpanMs: number;
}

export const DEFAULT_ENGINE_CONFIG: EngineConfig = {
  windowMs: 60_000,
  slideMs: 60_000,
  offsetMs: 0,
  watermarkMs: 5 * 60_000,
  triggerMs: 1000,
  trendSpanMs: 6 * 60_000,
};

/** One row of `trade_windows`. Times are epoch milliseconds (UTC). */
export interface WindowResult {
  asset: string;
  windowStart: number;
  windowEnd: number;
  trades: number;
  totalVolume: number;
  totalAmount: number;
  averagePrice: number;
  vwap: number;
  open: number;
  high: number;
  low: number;
  close: number;
  buyVolume: number;
  sellVolume: number;
  isFinal: boolean;
  updatedAt: number;
}

export type TrendDirection = 'up' | 'down' | 'flat';

/** One row of `price_trends`. */
export interface TrendResult {
  asset: string;
  windowStart: number;
  windowEnd: number;
  vwap: number;
  /** VWAP of the asset's previous non-empty window; null when there is none. */
  prevVwap: number | null;
  trend: TrendDirection | null;
  /** VWAP of all the asset's trades with event time in [windowEnd - span, windowEnd). */
  avgPrice6m: number;
  /** (vwap - vwap of the earliest non-empty window in the span) / that * 100. */
  change6mPct: number;
  /** Non-empty windows contained in the span. */
  windows6m: number;
  isFinal: boolean;
}

/** What one trigger produced: the rows that changed since the previous trigger. */
export interface EngineOutput {
  windows: WindowResult[];
  trends: TrendResult[];
  /** The watermark after this trigger (epoch ms; +Infinity once a bounded source ended). */
  watermark: number;
}
