// Messages between the replay and its parse threads (parallel-scan.ts, parse-worker.ts).
import type { TradeColumnArrays } from '../core/trade-columns.js';
import type { TradeKey } from '../sinks/contract.js';

/** Lines to scan: whole lines, each ending with a newline but for a file's last line. */
export interface ParseJob {
  seq: number;
  /** Its own ArrayBuffer, moved to the worker and back. */
  bytes: Uint8Array;
  /** The receive time the scanner validates event times against (the main thread's clock when it sent the job). */
  receivedAt: number;
}

/** What a parse thread read: per line its end and whether the scanner read it; the trades it read, as columns. */
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
  /** The columns of a TradeColumns (views of one buffer, moved); `key` indexes the thread's key table. */
  columns: TradeColumnArrays;
  /** Keys the thread added to its table with this job, in id order. */
  newKeys: TradeKey[];
}
