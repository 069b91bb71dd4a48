import type { ErrorCode } from '../../core/errors.js';
import type { StoreBatch } from './store-batch.js';

export type WorkerRequest =
  | { id: number; op: 'open' }
  | { id: number; op: 'write'; batch: StoreBatch }
  | { id: number; op: 'close' };

export type WorkerReply = { id: number; ok: true } | { id: number; ok: false; message: string; code?: ErrorCode; retriable: boolean };
