// Messages between the replay and its parse threads (parallel-scan.ts, parse-worker.ts).

/** Lines to scan: whole lines, each ending with a newline but for a file's last line. */
export interface ParseJob {
  seq: number;
  /** Its own ArrayBuffer, moved to the worker and back. */
  bytes: Uint8Array;
  /** The receive time the scanner validates event times against (the main thread's clock when it sent the job). */
  receivedAt: number;
}

/** Per trade in `numbers`: price, volume, timestamp, priceUsd, receivedAt (NaN when the line has none). */
export const NUMBERS_PER_TRADE = 5;

/** What a parse thread read: per line its end and whether the scanner read it; per trade read, its columns. */
export interface ParseResult {
  seq: number;
  bytes: Uint8Array;
  lines: number;
  /** Byte offset after each line (its newline included), from the job's start. */
  lineEnds: Uint32Array;
  /** 1: the scanner read the line (the next trade of the columns); 0: the main thread must judge it. */
  fast: Uint8Array;
  /** How many trades the columns hold. */
  count: number;
  /** Per trade: the id of its (exchange, base, quote) in the worker's key table. */
  key: Uint32Array;
  /** Per trade: 1 for a sell, 0 for a buy. */
  sell: Uint8Array;
  numbers: Float64Array;
  /** Per trade its tradeId (null: none), or null when no trade of the job has one. */
  tradeIds: (string | null)[] | null;
  /** Keys the worker added to its table with this job, flattened: exchange, base, quote, exchange, ... */
  newKeys: string[];
}
