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

/**
 * A number as JSON can carry it: a finite number as itself, and the values JSON has no literal for as
 * strings ('Infinity', '-Infinity', 'NaN', '-0'). A null next to a JsonNumber is never a number: it
 * means "none" (e.g. no previous window).
 */
export type JsonNumber = number | 'Infinity' | '-Infinity' | 'NaN' | '-0';

/** A pane (see panes.ts), its fields in this order. `dirty` is not stored: a snapshot has nothing dirty. */
export type PaneSnapshot = [
  start: number,
  trades: number,
  volume: JsonNumber,
  amount: JsonNumber,
  sumPrice: JsonNumber,
  high: JsonNumber,
  low: JsonNumber,
  buyVolume: JsonNumber,
  sellVolume: JsonNumber,
  openTime: JsonNumber,
  openSeq: number,
  openPrice: JsonNumber,
  closeTime: JsonNumber,
  closeSeq: number,
  closePrice: JsonNumber,
];

/**
 * A window entry of the engine's state. Fields that follow from elsewhere are left out: asset (the
 * asset's), windowStart (`start`), windowEnd (start + window), isFinal (`final`), and in the trend
 * also vwap (the window's).
 */
export interface WindowSnapshot {
  start: number;
  final: boolean;
  result: [
    trades: number,
    totalVolume: JsonNumber,
    totalAmount: JsonNumber,
    averagePrice: JsonNumber,
    vwap: JsonNumber,
    open: JsonNumber,
    high: JsonNumber,
    low: JsonNumber,
    close: JsonNumber,
    buyVolume: JsonNumber,
    sellVolume: JsonNumber,
    updatedAt: JsonNumber,
  ];
  trend: [prevVwap: JsonNumber | null, trend: TrendDirection | null, avgPrice6m: JsonNumber, change6mPct: JsonNumber, windows6m: number] | null;
}

export interface AssetSnapshot {
  asset: string;
  panes: PaneSnapshot[];
  windows: WindowSnapshot[];
  /** The newest window evicted from state (prev_vwap survives eviction); null when none was. */
  evicted: { start: number; vwap: JsonNumber } | null;
}

/**
 * The window engine's whole state at a trigger boundary (right after collect()), as a plain value:
 * JSON.parse(JSON.stringify(s)) gives back an equal value, and WindowEngine.restore(config, s) an
 * engine that goes on exactly as the one it was taken from. Size stays bounded with the engine's state
 * (panes and windows within watermark + trend span + one window per asset).
 */
export interface EngineSnapshot {
  version: 1;
  /** The config the engine ran with; a restore refuses one that would change results. */
  config: EngineConfig;
  /** Watermark: -Infinity before the first trade, +Infinity after finish(). */
  watermark: JsonNumber;
  nextFinalEnd: JsonNumber;
  finalizedThrough: JsonNumber;
  /** Arrival sequence: the next trade gets this number (also the count of accepted trades). */
  seq: number;
  lateCount: number;
  /** In the order the engine first saw them (it emits rows in this order). */
  assets: AssetSnapshot[];
}
