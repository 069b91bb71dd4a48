// What the dashboard shows, between the pipeline (or a store) and the web server: history by query,
// live updates by subscription. `run` and `process` feed it from the running pipeline (live.ts: an
// in-memory ring, never a second connection to a store the run holds); `coinstream dashboard --store`
// from a StoreReader (store.ts). The server (server.ts) knows only this interface.
import type { RejectReason } from '../core/trade.js';
import type { TrendResult, WindowResult } from '../engine/contract.js';

export type { TrendResult, WindowResult };

/** Where the data comes from, as the page shows it. */
export type FeedState = 'live' | 'reconnecting' | 'replay-finished' | 'stopped' | 'store';

export interface DashboardStatus {
  state: FeedState;
  /** Sources and whether each is connected now (files: true while being read). */
  sources: { name: string; connected: boolean }[];
  /** accepted and gaps are null where they are not known (a store keeps no count of them). */
  counters: { accepted: number | null; rejected: Record<RejectReason, number>; gaps: number | null };
  /** The span of the price trend (--trend-span), ms; null when not known. */
  trendSpanMs: number | null;
  /** When the stores last committed a batch (epoch ms), or null. */
  lastCommitAt: number | null;
  /** Event time of the newest trade minus the watermark delay: where windows become final (epoch ms), or null. */
  watermark: number | null;
  /** `process`: consumer lag per partition (`topic/partition` -> records). */
  consumerLag?: Record<string, number>;
}

/** One live update for one asset; any of its parts may be missing. */
export interface AssetUpdate {
  asset: string;
  /** The newest version of windows that changed (several when a batch closed one and opened the next). */
  windows?: WindowResult[];
  trends?: TrendResult[];
  /**
   * Last trade price (USD) and when that trade was received (epoch ms, our clock); `oldestReceivedAt`:
   * the earliest arrival among the trades this update stands for (updates are coalesced), so that the
   * page can measure the longest any trade waited to show.
   */
  price?: { priceUsd: number; receivedAt: number; oldestReceivedAt?: number };
  /** Trades per second of this asset over the last few seconds. */
  tradesPerSecond?: number;
}

export type DashboardEvent = { type: 'asset'; update: AssetUpdate } | { type: 'status'; status: DashboardStatus };

export interface DashboardData {
  /** Assets with windows, sorted. */
  assets(): Promise<string[]>;
  /** Windows inside [from, to) (window_start >= from, window_end <= to), by asset then start; the newest `limit` when given. */
  windows(q: { asset?: string; from: number; to: number; limit?: number }): Promise<WindowResult[]>;
  trends(q: { asset?: string; from: number; to: number; limit?: number }): Promise<TrendResult[]>;
  status(): DashboardStatus;
  /** Live events from now on; returns the unsubscribe function. */
  subscribe(listener: (event: DashboardEvent) => void): () => void;
  close(): Promise<void>;
}
