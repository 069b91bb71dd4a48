// `--archive trades|none`: whether the stores keep the accepted trades (DuckDB trade_log/trade_keys,
// the SQL stores' `trades`, Delta's DIR/trades). The archive is the largest cost of a run after
// parsing (issue 14); a user who only wants the windows can turn it off.
//
// Done by composition, like RetryingSink: the wrapped store is handed each batch with an empty
// TradeBatch, so it writes no trade rows, while windows, trends, rejected_trades and the progress of
// exactly-once still go in the same transaction as before. No store needs an option of its own, and the
// tables stay (an empty `trades`). The mode is part of the job's stored settings: a resumed job keeps it
// (Pipeline's checkSameArchive), so that `trades` never holds part of a job without a word.
import type { OutputBatch, Sink, TradeBatch } from './contract.js';
import { UsageError } from '../core/errors.js';
import { WrappedSink } from './wrapped-sink.js';

export const ARCHIVE_MODES = ['trades', 'none'] as const;
export type ArchiveMode = (typeof ARCHIVE_MODES)[number];

export function parseArchive(text: string): ArchiveMode {
  if (!(ARCHIVE_MODES as readonly string[]).includes(text)) throw new UsageError(`--archive "${text}" must be one of: ${ARCHIVE_MODES.join(', ')}`);
  return text as ArchiveMode;
}

/**
 * A batch with no trades. Plain (not shared) zero-length arrays: nothing to reuse or hand back, and the
 * DuckDB sink's postMessage copies zero bytes. Sinks only read a batch's columns, so one is enough.
 */
const NO_TRADES: TradeBatch = Object.freeze({
  length: 0,
  keys: [],
  key: new Uint32Array(0),
  price: new Float64Array(0),
  volume: new Float64Array(0),
  timestamp: new Float64Array(0),
  priceUsd: new Float64Array(0),
  receivedAt: new Float64Array(0),
  tradeId: null,
});

/** Hands the wrapped sink every batch without its trades (see above). */
export class NoArchiveSink extends WrappedSink {
  override write(batch: OutputBatch): Promise<void> {
    // A new batch object: the pipeline keeps its own, whose trade columns it reuses after the write.
    return this.inner.write({ ...batch, trades: NO_TRADES });
  }
}

/** The stores of a run or process, with the archive turned off when `mode` is none. */
export function withArchive(sinks: Sink[], mode: ArchiveMode): Sink[] {
  return mode === 'none' ? sinks.map((sink) => new NoArchiveSink(sink)) : sinks;
}
