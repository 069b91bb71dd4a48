// Every sink implements this one interface; batching, retries and metrics wrap a sink instead of
// living inside each one.
import type { RejectedTrade } from '../core/trade.js';
import type { TrendResult, WindowResult } from '../engine/contract.js';
import type { TradeBatch } from './trade-batch.js';

export type { TradeBatch };

/** Everything one trigger hands to the sinks. A sink writes it all or nothing. */
export interface OutputBatch {
  /** 0, 1, 2, ... in trigger order, like Spark's batch id. */
  batchId: number;
  windows: WindowResult[];
  trends: TrendResult[];
  rejected: RejectedTrade[];
  /** Latest price per asset that changed since the previous batch (CoinCap prices; not trades). */
  prices: PriceQuote[];
  /**
   * Trades accepted since the previous batch, by column (the embedded log archives them). The columns
   * are reused for a later batch once every sink's write has resolved: copy what you keep.
   */
  trades: TradeBatch;
  watermark: number;
  /** True for the last batch of a run (bounded source ended, or shutdown). */
  final: boolean;
}

export interface PriceQuote {
  asset: string;
  priceUsd: number;
  source: string;
  /** When we received it (our clock). */
  at: number;
}

export interface Sink {
  readonly name: string;
  open(): Promise<void>;
  write(batch: OutputBatch): Promise<void>;
  close(): Promise<void>;
}

/** The SINK SPEC grammar (DESIGN.md), for --help and error messages; here so that --help loads no sink. */
export const SINK_SPEC_HELP = 'console | duckdb:PATH | mysql://USER[:PASS]@HOST:PORT/DB | delta:PATH';
