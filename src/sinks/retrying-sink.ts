// Retries around a sink, by composition (DESIGN.md, convention 7): a store only says whether an error
// is worth retrying (CoinstreamError.retriable: I/O, a lock, a lost connection), and this wrapper
// decides how: capped exponential backoff, a log line per retry, then the original error.
//
// A retry writes the same batch again. That is safe because a sink writes a batch all or nothing (one
// transaction): a failed write left nothing behind.
import type { Clock } from '../core/clock.js';
import { backoffDelay, type BackoffOptions } from '../core/backoff.js';
import { CoinstreamError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { OutputBatch, Sink } from './contract.js';
import { WrappedSink } from './wrapped-sink.js';

export interface RetryPolicy extends BackoffOptions {
  /** Tries in all, the first included. */
  attempts: number;
}

/** About 15 s of retries in all: long enough for a store to come back from a hiccup, short enough to fail visibly. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, initialMs: 500, maxMs: 8000, factor: 2 };

export class RetryingSink extends WrappedSink {
  constructor(
    inner: Sink,
    private readonly deps: { clock: Clock; logger: Logger },
    private readonly policy: RetryPolicy = DEFAULT_RETRY,
  ) {
    super(inner);
  }

  override async write(batch: OutputBatch): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.inner.write(batch);
      } catch (err) {
        const retriable = err instanceof CoinstreamError && err.retriable;
        if (!retriable || attempt >= this.policy.attempts) throw err;
        const delayMs = backoffDelay(attempt, this.policy);
        this.deps.logger.warn(
          { sink: this.name, batchId: batch.batchId, attempt, retryInMs: delayMs, err: (err as Error).message },
          `${this.name}: writing batch ${batch.batchId} failed (${(err as Error).message}); retrying in ${(delayMs / 1000).toFixed(1)} s (try ${attempt + 1} of ${this.policy.attempts})`,
        );
        await this.deps.clock.sleep(delayMs);
      }
    }
  }
}
