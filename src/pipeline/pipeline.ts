// Runs one job: sources -> engine -> sinks, on a processing-time trigger.
//
// The ingest loop is synchronous per source event (the engine is a plain data structure); a trigger
// collects what changed and hands one OutputBatch to every sink. Triggers are serialised and coalesced:
// if the sinks are slower than the trigger interval, the next trigger simply carries more rows.
// When the sinks fall far behind, the ingest loop waits for them (backpressure) instead of buffering
// the whole input.

import type { Clock, Timer } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import { capRaw, tradeToJson, type RejectReason, type RejectedTrade } from '../core/trade.js';
import type { EngineConfig } from '../engine/contract.js';
import { WindowEngine } from '../engine/window-engine.js';
import type { OutputBatch, PriceQuote, Sink } from '../sinks/contract.js';
import { TradeBatchBuilder } from '../sinks/trade-batch.js';
import type { Source, SourceEvent } from '../sources/contract.js';
import { mergeEvents } from '../sources/merge.js';

export interface PipelineOptions {
  sources: Source[];
  sinks: Sink[];
  engine: EngineConfig;
  clock: Clock;
  logger: Logger;
  /** Stop after this many non-empty batches (Spark's console printed 10). */
  maxBatches?: number;
  /** Aborting stops the sources, writes one last batch and closes the sinks. */
  signal?: AbortSignal;
  /** How often to log progress, ms. */
  progressEveryMs?: number;
}

export interface PipelineSummary {
  batches: number;
  /** Trades in the batches written: what the stores hold, not what was read after the last write. */
  accepted: number;
  /** Rejections in the batches written, by reason. */
  rejected: Record<RejectReason, number>;
  gaps: number;
  /** Sources that turned out damaged (a truncated .gz): read up to the damage, the rest skipped. */
  damaged: number;
  watermark: number;
  /** Why it stopped. */
  reason: 'end-of-input' | 'max-batches' | 'aborted';
}

/**
 * A batch is cut early once this many accepted trades wait (like Spark's maxOffsetsPerTrigger), so that
 * at replay speed the sinks write one batch while the next is being read. 122,880 is one DuckDB row
 * group, and the cut is exact: a commit of whole row groups goes straight to the file, while batches a
 * little over a row group leave a partial group per commit that DuckDB later rewrites (measured, 1M
 * trades into the store: 2.0 CPU-s in batches of ~127k, 0.95 CPU-s in batches of exactly 122,880).
 */
const MAX_BATCH_TRADES = 122_880;
/** Batches cut but not yet written beyond which ingest waits for the sinks (backpressure). */
const MAX_QUEUED_BATCHES = 2;

export class Pipeline {
  private readonly engine: WindowEngine;
  private readonly stop = new AbortController();
  private readonly pendingTrades = new TradeBatchBuilder(MAX_BATCH_TRADES);
  private pendingRejected: RejectedTrade[] = [];
  private pendingPrices = new Map<string, PriceQuote>();
  /** Batches cut so far (the next batch's id). */
  private batchesCut = 0;
  private batchesWritten = 0;
  /** Writes in trigger order: each starts when the previous one is done. */
  private chain: Promise<void> = Promise.resolve();
  private readonly queuedWrites: Promise<void>[] = [];
  private failure: unknown = null;
  private timer: Timer | null = null;
  private stopReason: PipelineSummary['reason'] | null = null;
  /** What the written batches held (the summary), and events that are counted, not stored. */
  private readonly counts = { accepted: 0, gaps: 0, damaged: 0, rejected: { malformed: 0, invalid: 0, late: 0, duplicate: 0 } as Record<RejectReason, number> };
  /** When ingest last logged that it waits for the sinks (logged at most every 10 s). */
  private lastWaitLog = -Infinity;

  constructor(private readonly options: PipelineOptions) {
    this.engine = new WindowEngine(options.engine);
  }

  async run(): Promise<PipelineSummary> {
    const { sources, sinks, logger } = this.options;
    const outer = this.options.signal;
    const onOuterAbort = () => this.requestStop('aborted');
    if (outer?.aborted) this.requestStop('aborted');
    outer?.addEventListener('abort', onOuterAbort, { once: true });

    let progress: NodeJS.Timeout | undefined;
    try {
      // Inside the try: if one sink fails to open, the ones already open are closed again.
      for (const sink of sinks) await sink.open();
      logger.info({ sources: sources.map((s) => s.name), sinks: sinks.map((s) => s.name), engine: this.options.engine }, 'pipeline started');
      this.armTimer();
      progress = this.startProgressLog();
      const events = mergeEvents(sources.map((s) => s.events(this.stop.signal)));
      for await (const event of events) {
        if (event.kind === 'trades') {
          // A full batch is cut at exactly MAX_BATCH_TRADES, even in the middle of an event.
          for (let from = 0; from < event.trades.length; ) {
            from = this.ingest(event, from);
            if (this.pendingTrades.length >= MAX_BATCH_TRADES) {
              if (this.queuedWrites.length >= MAX_QUEUED_BATCHES) await this.waitForSinks();
              void this.trigger();
              // A size cut is a trigger too: the next timer trigger comes --trigger after it.
              this.armTimer();
              // Nothing was cut (the last of --batches is already on its way): its write stops the run.
              if (this.pendingTrades.length >= MAX_BATCH_TRADES) await this.chain;
              if (this.failure || this.stop.signal.aborted) break;
            }
          }
        } else {
          this.handle(event);
        }
        if (this.failure) throw this.failure;
        if (this.stop.signal.aborted) break;
      }
      this.timer?.cancel();
      // Let a trigger that is already running finish before deciding on the last batch.
      await this.chain;
      if (this.failure) throw this.failure;
      if (this.stopReason === 'max-batches') return this.summary('max-batches');
      // Every source ended on its own: like Spark's availableNow, everything becomes final. On shutdown
      // instead, the current state of every open window is written, still marked not final.
      if (!this.stop.signal.aborted) this.engine.finish();
      await this.trigger(true);
      if (this.failure) throw this.failure;
      return this.summary(this.stopReason ?? 'end-of-input');
    } finally {
      this.timer?.cancel();
      clearInterval(progress);
      outer?.removeEventListener('abort', onOuterAbort);
      this.stop.abort();
      for (const sink of sinks) {
        try {
          await sink.close();
        } catch (err) {
          logger.error({ err, sink: sink.name }, 'closing a sink failed');
        }
      }
    }
  }

  private requestStop(reason: PipelineSummary['reason']): void {
    if (this.stop.signal.aborted) return;
    this.stopReason = reason;
    this.stop.abort();
  }

  /** Everything but trades, which the run loop feeds to ingest() so that it can cut full batches. */
  private handle(event: Exclude<SourceEvent, { kind: 'trades' }>): void {
    const { logger } = this.options;
    switch (event.kind) {
      case 'rejected':
        this.reject(event.rejected);
        break;
      case 'damaged':
        this.counts.damaged++;
        logger.warn({ source: event.source }, `${event.source}: ${event.detail}; going on without the rest of it`);
        break;
      case 'gap':
        this.counts.gaps++;
        logger.warn({ source: event.source, symbol: event.symbol, expected: event.expected, received: event.received }, 'gap in trade ids: trades were missed');
        break;
      case 'connected':
        logger.info({ source: event.source, url: event.url }, 'connected');
        break;
      case 'disconnected':
        // The feed's client has already logged why, at warn level.
        logger.debug({ source: event.source, reason: event.reason, retryInMs: event.retryInMs }, 'disconnected; will retry');
        break;
      case 'price':
        // The prices view keeps the latest quote per asset; prices never enter the volume windows.
        this.pendingPrices.set(event.asset, { asset: event.asset, priceUsd: event.priceUsd, source: event.source, at: event.at });
        break;
      case 'heartbeat':
        break;
    }
  }

  /** Feeds trades[from..] to the engine until the pending batch is full; returns where it stopped. */
  private ingest(event: Extract<SourceEvent, { kind: 'trades' }>, from: number): number {
    const { trades, receivedAt } = event;
    let i = from;
    while (i < trades.length && this.pendingTrades.length < MAX_BATCH_TRADES) {
      const trade = trades[i++];
      if (this.engine.ingest(trade)) {
        this.pendingTrades.push(trade, receivedAt);
      } else {
        this.rejectLate(event, i - 1);
      }
    }
    return i;
  }

  /** A late trade, kept with the input text it came in as and where it was, like every other rejection. */
  private rejectLate(event: Extract<SourceEvent, { kind: 'trades' }>, i: number): void {
    const trade = event.trades[i];
    const where = event.origins?.where(i);
    this.pendingRejected.push({
      receivedAt: trade.receivedAt ?? event.receivedAt ?? this.options.clock.now(),
      source: event.source,
      reason: 'late',
      detail: `${where ? `${where}: ` : ''}event time ${new Date(trade.timestamp).toISOString()} is behind the watermark ${new Date(this.engine.watermark).toISOString()}: every window it belongs to is final`,
      raw: capRaw(event.origins?.raw(i) ?? tradeToJson(trade)),
    });
  }

  private reject(rejected: RejectedTrade): void {
    this.pendingRejected.push(rejected);
  }

  /** Ingest waits for the oldest queued write: the sinks are behind (and live sockets pause behind us). */
  private async waitForSinks(): Promise<void> {
    const now = this.options.clock.now();
    if (now - this.lastWaitLog >= 10_000) {
      this.lastWaitLog = now;
      this.options.logger.info({ queuedBatches: this.queuedWrites.length }, 'the sinks are behind: reading waits for them (logged at most every 10 s)');
    }
    await this.queuedWrites[0];
  }

  /**
   * The trigger timer: fires --trigger after the previous cut, whether that cut came from the timer or
   * from a full batch. So no change waits longer than --trigger, and at replay speed, where full
   * batches are cut several times a second, the timer never cuts a part-filled batch in between
   * (one did about every second: a part-filled row group goes through DuckDB's WAL and is rewritten at
   * the next checkpoint, where a whole one is written once).
   */
  private armTimer(): void {
    this.timer?.cancel();
    this.timer = this.options.clock.setTimeout(() => {
      if (this.stop.signal.aborted) return;
      // Like Spark, a trigger starts only once the previous batch is written; a tick that finds a write
      // still running is skipped and what changed rolls into the next batch.
      if (this.queuedWrites.length === 0) void this.trigger();
      this.armTimer();
    }, this.options.engine.triggerMs);
  }

  /**
   * A trigger: cuts a batch of everything that changed until now and queues its write behind the
   * writes before it. Resolves when every queued write is done.
   */
  private trigger(final = false): Promise<void> {
    const max = this.options.maxBatches;
    if (this.failure || (max !== undefined && this.batchesCut >= max)) return this.chain;
    const batch = this.cut(final);
    if (batch === null) return this.chain;
    const write = this.chain.then(async () => {
      if (this.failure) return;
      try {
        for (const sink of this.options.sinks) await sink.write(batch);
        // Every sink is done with the trade columns: their memory goes to the next batch.
        this.counts.accepted += batch.trades.length;
        for (const r of batch.rejected) this.counts.rejected[r.reason]++;
        this.pendingTrades.release(batch.trades);
        this.batchesWritten++;
        this.options.logger.debug({ batchId: batch.batchId, windows: batch.windows.length, trades: batch.trades.length, rejected: batch.rejected.length }, 'batch written');
        if (max !== undefined && this.batchesWritten >= max) this.requestStop('max-batches');
      } catch (err) {
        this.failure = err;
        this.stop.abort();
      } finally {
        this.queuedWrites.shift();
      }
    });
    this.queuedWrites.push(write);
    this.chain = write;
    return write;
  }

  /** Everything that changed since the previous batch, or null when nothing did. */
  private cut(final: boolean): OutputBatch | null {
    const out = this.engine.collect(this.options.clock.now());
    if (out.windows.length === 0 && out.trends.length === 0 && this.pendingRejected.length === 0 && this.pendingTrades.length === 0 && this.pendingPrices.size === 0) return null;
    const batch: OutputBatch = {
      batchId: this.batchesCut++,
      windows: out.windows,
      trends: out.trends,
      rejected: this.pendingRejected,
      trades: this.pendingTrades.take(),
      prices: [...this.pendingPrices.values()],
      watermark: out.watermark,
      final,
    };
    this.pendingRejected = [];
    this.pendingPrices = new Map();
    return batch;
  }

  private startProgressLog(): NodeJS.Timeout {
    const every = this.options.progressEveryMs ?? 10_000;
    let last = 0;
    const handle = setInterval(() => {
      const s = this.engine.stats();
      this.options.logger.info(
        { accepted: s.accepted, perSecond: Math.round(((s.accepted - last) * 1000) / every), rejected: this.counts.rejected, damaged: this.counts.damaged, batches: this.batchesWritten, watermark: Number.isFinite(s.watermark) ? new Date(s.watermark).toISOString() : String(s.watermark), openWindows: s.windows },
        'progress',
      );
      last = s.accepted;
    }, every);
    handle.unref();
    return handle;
  }

  private summary(reason: PipelineSummary['reason']): PipelineSummary {
    return { batches: this.batchesWritten, accepted: this.counts.accepted, rejected: { ...this.counts.rejected }, gaps: this.counts.gaps, damaged: this.counts.damaged, watermark: this.engine.watermark, reason };
  }
}
