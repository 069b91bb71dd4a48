import type { ErrorCode } from '../../core/errors.js';
import type { StoreBatch } from './store-batch.js';

/** Which store a worker writes, and the least level it logs: in workerData, or in a prestarted worker's InitRequest. */
export type StoreConfig = { path: string; logLevel: string };

export type WorkerRequest =
  /** checkEmpty: also answer whether the store holds results (for a file that was not there). */
  | { id: number; op: 'open'; checkEmpty: boolean }
  | { id: number; op: 'write'; batch: StoreBatch }
  | { id: number; op: 'readProgress'; job: string }
  | { id: number; op: 'clearJob'; job: string }
  | { id: number; op: 'jobs' }
  | { id: number; op: 'close' };

/** The first message to a prestarted worker (prestart.ts): the store it is for. */
export type InitRequest = { op: 'init'; config: StoreConfig };

/** `value`: what the operation returns (readProgress's progress), structured-cloned. */
export type WorkerReply = { id: number; ok: true; value?: unknown } | { id: number; ok: false; message: string; code?: ErrorCode; retriable: boolean };

/**
 * A log line of the worker, written by the main thread's logger: the worker loads no logging library
 * (pino took ~40 ms of its start, on the path of every run into DuckDB), and its lines come out in the
 * same format and stream as every other.
 */
export type WorkerLog = { op: 'log'; level: StoreLogLevel; fields: Record<string, unknown>; msg: string };

export type StoreLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** What the store logs with: a pino logger on the main thread, one that posts WorkerLog lines in the worker. */
export type StoreLogger = Record<StoreLogLevel, (fields: Record<string, unknown>, msg: string) => void>;
