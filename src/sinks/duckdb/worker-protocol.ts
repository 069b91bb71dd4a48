import type { ErrorCode } from '../../core/errors.js';
import type { LogStyle } from '../../core/logger.js';
import type { StoreBatch } from './store-batch.js';

/** Which store a worker writes, and how it logs: in workerData, or in a prestarted worker's InitRequest. */
export type StoreConfig = { path: string; logLevel: string; logStyle: LogStyle };

export type WorkerRequest =
  /** checkEmpty: also answer whether the store holds results (for a file that was not there). */
  | { id: number; op: 'open'; checkEmpty: boolean }
  | { id: number; op: 'write'; batch: StoreBatch }
  | { id: number; op: 'readProgress'; job: string }
  | { id: number; op: 'clearJob'; job: string }
  | { id: number; op: 'close' };

/** The first message to a prestarted worker (prestart.ts): the store it is for. */
export type InitRequest = { op: 'init'; config: StoreConfig };

/** `value`: what the operation returns (readProgress's progress), structured-cloned. */
export type WorkerReply = { id: number; ok: true; value?: unknown } | { id: number; ok: false; message: string; code?: ErrorCode; retriable: boolean };
