// Every sink implements this one interface; batching, retries and metrics wrap a sink instead of
// living inside each one.
import { CoinstreamError } from '../core/errors.js';
import type { Direction, RejectedTrade } from '../core/trade.js';
import type { SourcePosition } from '../sources/contract.js';
import type { TrendResult, WindowResult } from '../engine/contract.js';

/** What repeats from trade to trade: stored once per batch, referenced by index. */
export interface TradeKey {
  exchange: string;
  base: string;
  quote: string;
  direction: Direction;
}

/**
 * The trades of a batch by column, the same for every store: each converts it in its own folder.
 * Columns, not Trade objects: a million objects held until a trigger cost ~0.45 s of GC per million,
 * and typed arrays in shared memory reach a worker thread without a copy. TradeBatchBuilder
 * (trade-batch.ts) fills them; the typed arrays may be longer than `length`.
 */
export interface TradeBatch {
  length: number;
  /** Distinct (exchange, base, quote, direction) of this batch; `key` holds an index into it per trade. */
  keys: TradeKey[];
  key: Uint32Array;
  price: Float64Array;
  volume: Float64Array;
  timestamp: Float64Array;
  priceUsd: Float64Array;
  /** NaN where the trade had no receive time. */
  receivedAt: Float64Array;
  /** Only present when some trade had an id. */
  tradeId: (string | null)[] | null;
}

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
  /** Where the job is after this batch: a store that keeps progress writes it in the batch's transaction. */
  progress?: BatchProgress;
}

/**
 * What a store keeps with each batch, in the same transaction as its rows (DESIGN.md, Recovery), so
 * that a restart goes on from exactly what the store holds: never a checkpoint file beside it.
 */
export interface BatchProgress {
  /** The job these rows belong to. */
  job: string;
  /** Per source with positions (files): where reading goes on after this batch. */
  positions: Record<string, SourcePosition>;
  /** The engine settings that shape the results, as JSON text (for people reading the table). */
  settings: string;
  /** The engine's state after this batch (WindowEngine.snapshot() as JSON text); its settings inside. */
  engineState: string;
  watermark: number;
  /** Every source was read to the end and every window written final: the job is done. */
  finished: boolean;
  /**
   * The batch id the store must hold for the job before this batch (-1: none). A store that holds
   * another refuses the batch with a FENCED error (fencedError), in the same transaction, so that two
   * writers of a job never both write it: two owners of a partition after a rebalance (the loser
   * resumes from what the winner stored), or two `run`s started on one shared store by mistake.
   */
  expectBatchId?: number;
}

/** A store's refusal of a batch whose job another process moved on since this one read it. */
export function fencedError(store: string, job: string, stored: number, expected: number): CoinstreamError {
  return new CoinstreamError(
    'FENCED',
    `${store}: job "${job}" is at batch ${stored}, not ${expected} as when this process read it: another process wrote it meanwhile; this one stops here and the store keeps what the other wrote (one process per job: to run two jobs, give each its own store)`,
  );
}

/** Progress as a store read it back. */
export interface StoredProgress extends BatchProgress {
  /** The batch it was written with: the next batch continues from batchId + 1. */
  batchId: number;
  /** When that batch was committed (our clock). */
  updatedAt: number;
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
  /**
   * Stores only: the job's progress as of the last committed batch, or null for a job never run here.
   * Throws (CONFIG) when the store holds rows of the job but no progress to resume them from.
   */
  readProgress?(job: string): Promise<StoredProgress | null>;
  /** Stores only: removes every row of the job and its progress (`--fresh`). */
  clearJob?(job: string): Promise<void>;
  /**
   * Stores only: every job whose progress the store holds. The tables have no job column, so the jobs
   * of one store share its rows: the pipeline refuses a job that would mix with another's.
   */
  jobs?(): Promise<string[]>;
  /**
   * Stores that can tell without opening: true when the store surely holds nothing (a DuckDB file that
   * was not there). When every store says so, the job is new and the pipeline reads while they open.
   * Such a store's open() fails if it finds a job after all (another process made it meanwhile).
   */
  startsEmpty?(): boolean;
}

/** The SINK SPEC grammar (DESIGN.md), for --help and error messages; here so that --help loads no sink. */
export const SINK_SPEC_HELP = 'console | duckdb:PATH | mysql://USER[:PASS]@HOST:PORT/DB | postgres://USER[:PASS]@HOST:PORT/DB | delta:PATH';

/**
 * Reading a store back (`coinstream query`, the dashboard): the same answers from every store kind
 * (DuckDB, MySQL, PostgreSQL). Times are epoch milliseconds. `openStoreReader` (read-store.ts) makes
 * one from a store spec. A reader never writes: it creates no table and takes no write lock.
 */
/** Which windows (or trends) a StoreReader reads: see windowsBetween. */
export interface RangeQuery {
  asset?: string;
  from: number;
  to: number;
  limit?: number;
  /** With `limit`: the latest rows, not the first (still returned in key order). */
  newest?: boolean;
}

export interface StoreReader {
  /** How the store is shown (a DuckDB file's path; a server's URL with the password as ***). */
  readonly name: string;
  /**
   * The windows whose end is within `lastMs` of the newest window end (of that asset, or of all
   * assets), each with its trend row when there is one; ordered by asset, window_start, window_end.
   */
  latestWindows(o: { asset?: string; lastMs: number }): Promise<{ window: WindowResult; trend?: TrendResult }[]>;
  /** The assets with a window ending within `lastMs` of the newest window end, in code-point order. */
  assets(o: { lastMs: number }): Promise<string[]>;
  /**
   * The windows inside [from, to): window_start >= from and window_end <= to (a window is the
   * half-open [window_start, window_end)). Ordered by asset, window_start, window_end; the first
   * `limit` of them when given, or with `newest` the `limit` latest (by window_start, window_end).
   * from/to may be ±Infinity.
   */
  windowsBetween(o: RangeQuery): Promise<WindowResult[]>;
  /** The price_trends rows inside [from, to), as windowsBetween selects and orders windows. */
  trends(o: RangeQuery): Promise<TrendResult[]>;
  /** Rejected trades in the store by reason, e.g. { late: 12, malformed: 3 }; keys sorted. */
  rejectedCounts(): Promise<Record<string, number>>;
  /** The settings (JSON) of the job the store holds, or null when it holds none. */
  jobSettings(): Promise<string | null>;
  /** The job's progress as the store's readProgress reads it; null when the store holds none of it. */
  progress(job: string): Promise<StoredProgress | null>;
  close(): Promise<void>;
}
