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
import { TradeColumns, tradeAt } from '../core/trade-columns.js';
import type { EngineConfig, EngineOutput } from '../engine/contract.js';
import { WindowEngine } from '../engine/window-engine.js';
import { checkSnapshotSettings } from '../engine/snapshot.js';
import type { ArchiveMode } from '../sinks/archive.js';
import type { BatchProgress, OutputBatch, PriceQuote, Sink, StoredProgress } from '../sinks/contract.js';
import { CoinstreamError } from '../core/errors.js';
import type { EngineSnapshot } from '../engine/contract.js';
import { TradeBatchBuilder, dropFirstTrades } from '../sinks/trade-batch.js';
import { interruptIfAsked } from '../sinks/fault.js';
import type { Source, SourceEvent, SourcePosition } from '../sources/contract.js';
import { mergeByEventTime, mergeEvents, sliceTrades } from '../sources/merge.js';
import { paceByEventTime } from '../sources/pace.js';
import { logSourceStatus } from '../sources/log-status.js';

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
  /** Replay pace: the merged files play at this many times real time (Infinity, the default: --speed max). */
  speed?: number;
  /** The job whose progress the stores keep (DESIGN.md, Recovery); default 'run'. */
  job?: string;
  /** Clear the job's rows and progress in every store first, and start over (--fresh). */
  fresh?: boolean;
  /**
   * Other processes share the stores by design (`process`: a partition changes owner in a rebalance),
   * so no store can be taken as empty without asking it. Every job's batches are fenced either way:
   * each tells each store which batch it must hold first (BatchProgress.expectBatchId), and a store
   * that holds another refuses it (FENCED), so that two `run`s started on one SQL store by mistake
   * cannot both write it.
   */
  fenced?: boolean;
  /**
   * Whether the stores keep the accepted trades (--archive; default 'trades'). Part of the job's stored
   * settings: switching it on a resumed job would leave a `trades` table holding part of the job.
   */
  archive?: ArchiveMode;
  /**
   * Other jobs that write the same stores by design (`process`: the other partitions of its group).
   * A store that holds any other job is refused: rows carry no job, so the two would mix.
   */
  sharesStoresWith?: (job: string) => boolean;
  /** Watchers of the run (metrics, the dashboard): told of source events and of written batches. */
  observers?: PipelineObserver[];
}

/** What a watcher of the run is told. Observers must be quick and must not throw. */
export interface PipelineObserver {
  /** A source event as it arrives (a trades event carries many trades), before the engine sees it. */
  event?(event: SourceEvent): void;
  /** A batch once every sink has written it: how long the write took (ms) and when it ended (clock ms). */
  written?(batch: OutputBatch, writeMs: number, at: number): void;
  /** One sink's write of a batch: how long it took (ms) and when it was committed there (clock ms). */
  sinkWritten?(sink: string, ms: number, batch: OutputBatch, at: number): void;
  /** The run ended (every source read, a stop, or a failure). */
  stopped?(reason: PipelineSummary['reason'] | 'failed'): void;
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
  /** Why it stopped ('already-finished': the stores hold the whole job; nothing was read). */
  reason: 'end-of-input' | 'max-batches' | 'aborted' | 'already-finished';
}

/**
 * A batch is cut early once this many accepted trades wait (like Spark's maxOffsetsPerTrigger), so that
 * at replay speed the sinks write one batch while the next is being read. 122,880 is one DuckDB row
 * group, and the cut is exact: a commit of whole row groups goes straight to the file, while batches a
 * little over a row group leave a partial group per commit that DuckDB later rewrites (measured, 1M
 * trades into the store: 2.0 CPU-s in batches of ~127k, 0.95 CPU-s in batches of exactly 122,880).
 */
const ROW_GROUP_TRADES = 122_880;
/**
 * The first batches of a run are one row group, so that the store starts writing early; later ones
 * are two. Each commit costs a fixed part too (the upserts, the progress rows, two fsyncs: ~35 ms per
 * batch on the 2-vCPU VM), and the DuckDB writer is what a replay waits for. Measured against batches
 * of one row group, 10M trades, 4 paired rounds: 0.93x the wall time (0.89-1.08x), peak RSS 608
 * against 491 MiB (DuckDB's own load of the same file peaks at ~594 MiB); 1M trades, 12 rounds: 1.00x,
 * 381 against 345 MiB. Live feeds cut by --trigger long before a row group.
 */
const FIRST_BATCHES = 2;
const MAX_BATCH_TRADES = 2 * ROW_GROUP_TRADES;
/** Batches cut but not yet written beyond which ingest waits for the sinks (backpressure). */
const MAX_QUEUED_BATCHES = 2;

export class Pipeline {
  /** Replaced by the stored one when a job resumes. */
  private engine: WindowEngine;
  /** Where each source with positions is: after the last record ingested (what a batch cut now holds). */
  private readonly positions = new Map<string, SourcePosition>();
  /** Whether the sinks keep progress (a store does; a console-only run has nothing to resume). */
  private tracksProgress = false;
  /** Stores ahead of the one the job resumed from (a crash between two stores' writes of a batch). */
  private ahead: AheadStore[] = [];
  /**
   * Where a store ahead finished the job, when the store the job resumes from did not: this run reads
   * up to there and finishes there, as that store's run did (see resume). Null otherwise.
   */
  private finishAt: { store: string; positions: Record<string, SourcePosition>; cut: boolean } | null = null;
  /** The batch id each store holds for the job (-1: none), for fenced writes. */
  private readonly storedBatch = new Map<Sink, number>();
  private readonly stop = new AbortController();
  private readonly pendingTrades = new TradeBatchBuilder(MAX_BATCH_TRADES);
  private pendingRejected: RejectedTrade[] = [];
  private pendingPrices = new Map<string, PriceQuote>();
  /** The next batch's id: batch ids go on from the stored job's (see resume). */
  private batchesCut = 0;
  /** Batches cut by this run (what --batches counts: a resumed job writes N more). */
  private batchesCutHere = 0;
  /** Accepted trades at which the pending batch is cut (see FIRST_BATCHES). */
  private batchLimit = ROW_GROUP_TRADES;
  private batchesWritten = 0;
  /** The sinks' open, when it runs beside reading (storesStartEmpty). */
  private opening: Promise<void> | null = null;
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
      if (this.storesStartEmpty()) {
        // The job is new (every store is a file not made yet): reading starts while the stores open
        // (DuckDB's takes 0.2-0.5 s), and the first write waits for them. A failed open fails the run
        // as a failed write does.
        this.tracksProgress = true;
        this.opening = this.openSinks();
        this.chain = this.opening.catch((err: unknown) => {
          this.failure = err;
          this.stop.abort();
        });
      } else {
        // Inside the try: if one sink fails to open, the ones already open are closed again.
        await this.openSinks();
        if ((await this.resume()) === 'already-finished') return this.summary('already-finished');
      }
      logger.info({ sources: sources.map((s) => s.name), sinks: sinks.map((s) => s.name), engine: this.options.engine }, 'pipeline started');
      this.armTimer();
      progress = this.startProgressLog();
      const events = this.openStreams();
      const observers = this.options.observers ?? [];
      for await (const event of events) {
        for (const o of observers) o.event?.(event);
        if (event.kind === 'trades') {
          // A full batch is cut at exactly batchLimit trades, even in the middle of an event.
          for (let from = 0; from < event.trades.length; ) {
            from = this.ahead.length > 0 ? this.ingestCountingHeld(event, from) : this.ingest(event, from);
            this.advance(event, from);
            if (this.pendingTrades.length >= this.batchLimit) {
              if (this.queuedWrites.length >= MAX_QUEUED_BATCHES) await this.waitForSinks();
              void this.trigger();
              // A size cut is a trigger too: the next timer trigger comes --trigger after it.
              this.armTimer();
              // Nothing was cut (the last of --batches is already on its way): its write stops the run.
              if (this.pendingTrades.length >= this.batchLimit) {
                await this.chain;
                // Else this loop would go round for ever in microtasks, deaf even to SIGINT and SIGTERM.
                if (!this.failure && !this.stop.signal.aborted) throw new Error(`internal error: a full batch could not be cut, and the run was not stopping (batch ${this.batchesCut}, ${this.batchesWritten} written)`);
              }
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
      await this.trigger(true, !this.stop.signal.aborted);
      if (this.failure) throw this.failure;
      if (this.finishAt?.cut && !this.stop.signal.aborted) {
        logger.info({ store: this.finishAt.store }, `the stores are where ${this.finishAt.store} had finished the job, and finished there too; what the files hold beyond that point is read by the same command again`);
      }
      return this.summary(this.stopReason ?? 'end-of-input');
    } catch (err) {
      for (const o of this.options.observers ?? []) o.stopped?.('failed');
      throw err;
    } finally {
      this.timer?.cancel();
      clearInterval(progress);
      outer?.removeEventListener('abort', onOuterAbort);
      this.stop.abort();
      // A sink is closed once its open is over, whichever way it went.
      await this.opening?.catch(() => undefined);
      for (const sink of sinks) {
        try {
          await sink.close();
        } catch (err) {
          logger.error({ err, sink: sink.name }, 'closing a sink failed');
        }
      }
    }
  }

  /**
   * Whether the job is surely new without asking the stores: every store says it holds nothing (a
   * DuckDB file not made yet). Not with --fresh (it clears the stores first and logs that) nor for
   * fenced writers, whose stores are shared with other processes.
   */
  private storesStartEmpty(): boolean {
    const stores = this.options.sinks.filter((s) => s.readProgress);
    return !this.options.fresh && !this.options.fenced && stores.length > 0 && stores.every((s) => s.startsEmpty?.() === true);
  }

  private async openSinks(): Promise<void> {
    for (const sink of this.options.sinks) await sink.open();
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
      case 'rejected': {
        // Keyed by the reading source: a Kafka record's rejection names the file its producer read, and
        // its position stored under that name was never found again (an --available-now that waited
        // for ever, and a restart that wrote every rejection of the dead-letter topic twice).
        const reader = event.source ?? event.rejected.source;
        for (const store of this.ahead) {
          if (store.caughtUp) continue;
          if (event.end && holds(store, reader, event.end)) store.held.rejected++;
          else this.caughtUp(store);
        }
        this.reject(event.rejected);
        if (event.end) this.positions.set(reader, event.end);
        break;
      }
      case 'damaged':
      case 'gap':
      case 'connected':
      case 'disconnected':
        if (event.kind === 'damaged') this.counts.damaged++;
        if (event.kind === 'gap') this.counts.gaps++;
        logSourceStatus(logger, event);
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
  private ingest(event: Extract<SourceEvent, { kind: 'trades' }>, from: number, to = event.trades.length): number {
    const { trades, receivedAt } = event;
    if (trades instanceof TradeColumns) return this.ingestColumns(event, trades, from, to);
    let i = from;
    const limit = this.batchLimit;
    while (i < to && this.pendingTrades.length < limit) {
      const trade = trades[i++];
      if (this.engine.ingest(trade)) {
        this.pendingTrades.push(trade, receivedAt);
      } else {
        this.rejectLate(event, i - 1);
      }
    }
    return i;
  }

  /**
   * ingest() for trades that come as columns (a replay): the engine takes each trade's values, and the
   * accepted ones go to the batch a run at a time, a column at a time.
   */
  private ingestColumns(event: Extract<SourceEvent, { kind: 'trades' }>, c: TradeColumns, from: number, to: number): number {
    const end = Math.min(to, from + this.batchLimit - this.pendingTrades.length);
    const { keys, key, timestamp, priceUsd, volume } = c;
    let run = from; // accepted trades [run, i) wait to be copied to the batch
    for (let i = from; i < end; i++) {
      const k = keys[key[i]];
      if (this.engine.ingestValues(k.base, timestamp[i], priceUsd[i], volume[i], k.direction === 'buy')) continue;
      this.pendingTrades.pushColumns(c, run, i, event.receivedAt);
      this.rejectLate(event, i);
      run = i + 1;
    }
    this.pendingTrades.pushColumns(c, run, end, event.receivedAt);
    return end;
  }

  /**
   * The sources as one stream. Files (bounded sources) are one stream merged by event time, then
   * paced: consecutive or rotated recordings read like one file, and the merge is the same on every
   * run, so a restart from stored positions goes on exactly where the stored batch ended. Live feeds
   * join in arrival order.
   */
  private openStreams(): AsyncIterable<SourceEvent> {
    const { sources, clock } = this.options;
    const signal = this.stop.signal;
    const read = (s: Source) => s.events(signal, this.positions.get(s.name));
    const streams = sources.filter((s) => !s.bounded).map(read);
    const files = sources.filter((s) => s.bounded);
    if (files.length > 0) streams.unshift(paceByEventTime(mergeByEventTime(files.map(read)), { speed: this.options.speed ?? Infinity, clock, signal }));
    const merged = mergeEvents(streams);
    return this.finishAt === null ? merged : upTo(merged, this.finishAt);
  }

  /**
   * ingest(), counting for each store that is ahead how many of the records it already holds. Those
   * are a prefix of the resumed stream (the merge is deterministic, and the store's batches held a
   * prefix of it), so a store is caught up at the first record it does not hold.
   */
  private ingestCountingHeld(event: Extract<SourceEvent, { kind: 'trades' }>, from: number): number {
    const waiting = this.ahead.filter((s) => !s.caughtUp);
    if (waiting.length === 0) return this.ingest(event, from);
    // Trade by trade while some store may hold them: only the first events after a restart.
    let i = from;
    for (; i < event.trades.length && this.pendingTrades.length < this.batchLimit && waiting.some((s) => !s.caughtUp); i++) {
      const position = event.end && waiting.every((s) => holds(s, event.source, event.end!)) ? event.end : event.origins?.position?.(i);
      const rejectedBefore = this.pendingRejected.length;
      this.ingest(event, i, i + 1);
      const accepted = this.pendingRejected.length === rejectedBefore;
      for (const store of waiting) {
        if (store.caughtUp) continue;
        if (position && holds(store, event.source, position)) store.held[accepted ? 'trades' : 'rejected']++;
        else this.caughtUp(store);
      }
    }
    return i;
  }

  private caughtUp(store: AheadStore): void {
    if (store.caughtUp) return;
    store.caughtUp = true;
    this.options.logger.info({ store: store.sink.name }, `${store.sink.name} has caught up: it takes every record from here on`);
  }

  /** Records where a source is once trades[0..ingested) of its event are in the engine. */
  private advance(event: Extract<SourceEvent, { kind: 'trades' }>, ingested: number): void {
    if (ingested === event.trades.length) {
      if (event.end) this.positions.set(event.source, event.end);
    } else {
      const position = event.origins?.position?.(ingested - 1);
      if (position) this.positions.set(event.source, position);
    }
  }

  /**
   * Picks up where the stores are (DESIGN.md, Recovery): the engine as of their last committed batch,
   * each source's position, the next batch id. 'already-finished' when they hold the whole job.
   */
  private async resume(): Promise<'new' | 'resumed' | 'already-finished'> {
    const { sinks, logger, clock, sources } = this.options;
    const job = this.options.job ?? 'run';
    const stores = sinks.filter((s) => s.readProgress);
    this.tracksProgress = stores.length > 0;
    for (const store of stores) refuseOtherJobs(store.name, await store.jobs?.(), job, this.options.sharesStoresWith, this.options.fresh === true);
    if (this.options.fresh) {
      for (const store of stores) await store.clearJob?.(job);
      if (stores.length > 0) logger.info({ job, stores: stores.map((s) => s.name) }, `--fresh: cleared job "${job}" from ${stores.map((s) => s.name).join(', ')}; starting over`);
      return 'new';
    }
    const stored = await Promise.all(stores.map(async (sink) => ({ sink, progress: await sink.readProgress!(job) })));
    for (const { sink, progress: p } of stored) this.storedBatch.set(sink, p === null ? -1 : p.batchId);
    // Every store that holds the job must hold it with this run's settings, not only the one it resumes
    // from: a store ahead of a new one went unchecked, and a 1m run wrote into a 2m-window job's store.
    for (const { sink, progress: p } of stored) {
      if (p === null) continue;
      try {
        checkSameArchive(p.settings, this.options.archive ?? 'trades');
        checkSnapshotSettings(this.options.engine, JSON.parse(p.engineState) as EngineSnapshot);
      } catch (err) {
        if (err instanceof CoinstreamError && stores.length > 1) throw new CoinstreamError(err.code, `${sink.name}: ${err.message}`, err.retriable, { cause: err });
        throw err;
      }
    }
    // The job goes on from the store that is furthest behind; a store ahead of it (the process died
    // between two stores' writes of a batch, or a store was added) skips the records it already holds.
    // Behind means by position, not by batch id: a store that was behind and took new batches while
    // another skipped them holds the higher id at the earlier position, and resuming from the other one
    // lost every record between the two (bug hunt: 121k trades of 598k).
    const batchOf = (p: StoredProgress | null) => (p === null ? -1 : p.batchId);
    stored.sort((a, b) => comparePositions(a.progress, b.progress) || batchOf(a.progress) - batchOf(b.progress));
    const progress = stored[0]?.progress ?? null;
    for (const { sink, progress: p } of stored) {
      if (p === null || p === progress || (comparePositions(p, progress) === 0 && batchOf(p) === batchOf(progress))) continue;
      this.ahead.push({ sink, holds: p.positions, caughtUp: false, held: { trades: 0, rejected: 0, caughtUp: false } });
      logger.info({ job, store: sink.name, batchId: p.batchId, from: batchOf(progress) }, `${sink.name} is ahead (batch ${p.batchId}): it skips the records it already holds while the job catches up from ${progress === null ? 'the start' : `batch ${progress.batchId}`}`);
      // The nearest point where a store ahead finished the job: its end of input made every window
      // final there, and the stores behind must finish there too (reading on without it, the file grown
      // since, changed rows that store holds final; bug hunt).
      if (p.finished && sources.every((s) => s.bounded) && (this.finishAt === null || comparePositions(p, this.finishAt) < 0)) {
        this.finishAt = { store: sink.name, positions: p.positions, cut: false };
      }
    }
    // A store ahead holds a prefix of the merged stream of the files it read. A file new to it would
    // interleave records it does not hold with ones it does: it cannot be told apart by counting. Unless
    // the run stops where that store finished (then the new file waits for the next run), refused.
    for (const store of this.finishAt === null ? this.ahead : []) {
      const added = sources.find((s) => s.bounded && store.holds[s.name] === undefined);
      if (added) {
        throw new CoinstreamError('CONFIG', `${added.name} is new to job "${job}", but ${store.sink.name} is ahead of ${stored[0].sink.name} (a crash between their writes, or a store added): run once without ${added.name}, so that the stores agree, then add it`);
      }
    }
    // Batch ids are never reused (like Spark's): the next one follows the newest any store holds, so a
    // store's "already holds batch N" (a Delta txn, the SQL stores' check after a lost connection)
    // always means this very batch, also when the store behind holds nothing and the job starts over.
    this.batchesCut = Math.max(-1, ...stored.map((s) => batchOf(s.progress))) + 1;
    if (progress === null) return 'new';
    this.engine = WindowEngine.restore(this.options.engine, JSON.parse(progress.engineState) as EngineSnapshot);
    // A finished job stored the engine as it was before the end of input made every window final;
    // what was written final stays so if the job reads on.
    if (progress.finished) this.engine.sealFinished();
    for (const [source, position] of Object.entries(progress.positions)) this.positions.set(source, position);
    const when = new Date(progress.updatedAt).toISOString();
    // Finished, and no source that the stored job did not have (a live feed, the next file): nothing to do.
    // A source with no position read no record (an empty Kafka partition): done unless it has some now
    // (each rerun of --available-now wrote another empty batch for such a partition).
    const done = (s: Source) => s.bounded && (s.moreAfter ? !s.moreAfter(progress.positions[s.name]) : progress.positions[s.name] !== undefined);
    if (progress.finished && sources.every(done)) {
      logger.info({ job, batchId: progress.batchId, stores: stores.map((s) => s.name) }, `job "${job}" already finished at batch ${progress.batchId} (${when}): every source was read to the end; nothing to do (--fresh starts it over)`);
      return 'already-finished';
    }
    const read = sources.filter((s) => progress.positions[s.name]).map((s) => `${s.name} from line ${progress.positions[s.name].line + 1}`);
    logger.info({ job, batchId: progress.batchId, positions: progress.positions }, `resuming job "${job}" after batch ${progress.batchId} (${when})${read.length ? `: reading ${read.join(', ')}` : ''}`);
    if (sources.some((s) => !s.bounded && !s.replayable)) {
      const gapMs = clock.now() - progress.updatedAt;
      logger.warn({ job, gapMs }, `live sources cannot be re-read: trades between ${when} and now (${(gapMs / 1000).toFixed(1)} s) were not received; open windows go on from the stored state`);
    }
    return 'resumed';
  }

  /** A late trade, kept with the input text it came in as and where it was, like every other rejection. */
  private rejectLate(event: Extract<SourceEvent, { kind: 'trades' }>, i: number): void {
    const trade = tradeAt(event.trades, i);
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
  private trigger(final = false, finish = false): Promise<void> {
    const max = this.options.maxBatches;
    if (this.failure || (max !== undefined && this.batchesCutHere >= max)) return this.chain;
    const batch = this.cut(final, finish);
    if (batch === null) return this.chain;
    const held = this.takeHeld(finish);
    const write = this.chain.then(async () => {
      if (this.failure) return;
      try {
        const observers = this.options.observers ?? [];
        const started = this.options.clock.now();
        for (const sink of this.options.sinks) {
          const ahead = held.get(sink);
          const t0 = this.options.clock.now();
          await sink.write(this.fence(sink, ahead ? withoutHeld(batch, ahead) : batch));
          const committed = this.options.clock.now();
          for (const o of observers) o.sinkWritten?.(sink.name, committed - t0, batch, committed);
        }
        const at = this.options.clock.now();
        for (const o of observers) o.written?.(batch, at - started, at);
        // Every sink is done with the trade columns: their memory goes to the next batch.
        this.counts.accepted += batch.trades.length;
        for (const r of batch.rejected) this.counts.rejected[r.reason]++;
        this.pendingTrades.release(batch.trades);
        this.batchesWritten++;
        this.options.logger.debug({ batchId: batch.batchId, windows: batch.windows.length, trades: batch.trades.length, rejected: batch.rejected.length }, 'batch written');
        if (max !== undefined && this.batchesWritten >= max) this.requestStop('max-batches');
        interruptIfAsked(this.counts.accepted);
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

  /**
   * The batch as `sink` gets it, saying which batch the store must hold first. Also for `run`: a SQL
   * database or a Delta directory has no lock that keeps a second `run` out (a DuckDB file has), and
   * two runs resumed from the same batch wrote every later trade twice, both exiting 0.
   */
  private fence(sink: Sink, batch: OutputBatch): OutputBatch {
    if (!batch.progress || !sink.readProgress) return batch;
    const expectBatchId = this.storedBatch.get(sink) ?? -1;
    this.storedBatch.set(sink, batch.batchId);
    return { ...batch, progress: { ...batch.progress, expectBatchId } };
  }

  /** Everything that changed since the previous batch, or null when nothing did. */
  private cut(final: boolean, finish = false): OutputBatch | null {
    // The stores keep the engine as it was before finishing: all the windows are written final now,
    // but a later run given a new file (the next part of a recording) goes on from the real
    // watermark, so a window spanning the two files ends up with the trades of both.
    let resumeState: string | undefined;
    let beforeFinish: EngineOutput | null = null;
    if (finish) {
      beforeFinish = this.engine.collect(this.options.clock.now());
      if (this.tracksProgress) resumeState = JSON.stringify(this.engine.snapshot());
      this.engine.finish();
    }
    const out = this.engine.collect(this.options.clock.now());
    // What changed before finishing goes in the same batch; finish() made some of those rows final.
    if (beforeFinish) {
      out.windows = newestByKey(beforeFinish.windows, out.windows);
      out.trends = newestByKey(beforeFinish.trends, out.trends);
    }
    const empty = out.windows.length === 0 && out.trends.length === 0 && this.pendingRejected.length === 0 && this.pendingTrades.length === 0 && this.pendingPrices.size === 0;
    // A finished job is marked in the stores even when its last batch changed nothing.
    const finished = finish;
    if (empty && !(finished && this.tracksProgress)) return null;
    this.batchesCutHere++;
    if (this.batchesCutHere >= FIRST_BATCHES) this.batchLimit = MAX_BATCH_TRADES;
    const batch: OutputBatch = {
      batchId: this.batchesCut++,
      windows: out.windows,
      trends: out.trends,
      rejected: this.pendingRejected,
      trades: this.pendingTrades.take(),
      prices: [...this.pendingPrices.values()],
      watermark: out.watermark,
      final,
      progress: this.tracksProgress ? this.progress(out.watermark, finished, resumeState) : undefined,
    };
    this.pendingRejected = [];
    this.pendingPrices = new Map();
    return batch;
  }

  /** How many of the batch just cut each store that is ahead already holds; the counts start again. */
  private takeHeld(finish: boolean): Map<Sink, HeldRecords> {
    const held = new Map<Sink, HeldRecords>();
    for (const store of this.ahead) {
      // The end of input: a store that held every record read gets the finishing batch (the windows
      // made final, the job marked finished) like the others.
      if (finish) store.caughtUp = true;
      held.set(store.sink, { ...store.held, caughtUp: store.caughtUp });
      store.held = { trades: 0, rejected: 0, caughtUp: false };
    }
    if (this.ahead.every((s) => s.caughtUp)) this.ahead = [];
    return held;
  }

  /** What the stores keep with a batch cut now: the positions of what it holds and the engine after it. */
  private progress(watermark: number, finished: boolean, engineState = JSON.stringify(this.engine.snapshot())): BatchProgress {
    const { windowMs, slideMs, offsetMs, watermarkMs, trendSpanMs } = this.options.engine;
    return {
      job: this.options.job ?? 'run',
      positions: Object.fromEntries(this.positions),
      settings: JSON.stringify({ windowMs, slideMs, offsetMs, watermarkMs, trendSpanMs, archive: this.options.archive ?? 'trades' }),
      engineState,
      watermark,
      finished,
    };
  }

  private startProgressLog(): NodeJS.Timeout {
    const every = this.options.progressEveryMs ?? 10_000;
    let last = 0;
    const handle = setInterval(() => {
      const s = this.engine.stats();
      const perSecond = Math.round(((s.accepted - last) * 1000) / every);
      const rejected = Object.values(this.counts.rejected).reduce((a, b) => a + b, 0);
      // Before the first trade the engine's watermark is -Infinity, after the end of input +Infinity:
      // said in words, as the console sink does, not as a number nobody can read at 3 a.m.
      const watermark = Number.isFinite(s.watermark) ? new Date(s.watermark).toISOString() : s.watermark > 0 ? 'end of input' : 'none yet';
      this.options.logger.info(
        { accepted: s.accepted, perSecond, rejected: this.counts.rejected, damaged: this.counts.damaged, batches: this.batchesWritten, watermark, openWindows: s.windows },
        `progress: ${s.accepted.toLocaleString('en-US')} trades (${perSecond.toLocaleString('en-US')}/s), ${rejected} rejected, ${this.batchesWritten} batch${this.batchesWritten === 1 ? '' : 'es'} written, watermark ${watermark}`,
      );
      last = s.accepted;
    }, every);
    handle.unref();
    return handle;
  }

  private summary(reason: PipelineSummary['reason']): PipelineSummary {
    for (const o of this.options.observers ?? []) o.stopped?.(reason);
    return { batches: this.batchesWritten, accepted: this.counts.accepted, rejected: { ...this.counts.rejected }, gaps: this.counts.gaps, damaged: this.counts.damaged, watermark: this.engine.watermark, reason };
  }
}

/**
 * A store whose rows belong to another job: its windows and this job's would mix (double counts where
 * they share an asset), and --fresh, which clears whole tables, would delete the other job's results
 * (it deleted them, and left that job's progress behind). Shared with `process` (its --fresh).
 */
export function refuseOtherJobs(store: string, jobs: string[] | undefined, job: string, sharesWith: ((job: string) => boolean) | undefined, fresh: boolean): void {
  const others = (jobs ?? []).filter((j) => j !== job && !sharesWith?.(j));
  if (others.length === 0) return;
  const named = others.length > 3 ? `${others.slice(0, 3).map((j) => `"${j}"`).join(', ')} and ${others.length - 3} more` : others.map((j) => `"${j}"`).join(', ');
  const harm = fresh ? '--fresh would delete their results with this job\'s' : `the results of job "${job}" would mix with theirs`;
  throw new CoinstreamError('CONFIG', `${store} holds the results of another job (${named}); its tables are shared by every job written to it, so ${harm}: give this job a store of its own`);
}

/**
 * A resumed job keeps its --archive: with it switched, the `trades` table would hold the trades of
 * part of the job and nothing would say which. Stores written before the setting was stored do not
 * say, and are not checked.
 */
function checkSameArchive(storedSettings: string, asked: ArchiveMode): void {
  let stored: unknown;
  try {
    stored = (JSON.parse(storedSettings) as { archive?: unknown }).archive;
  } catch {
    return; // the engine state, checked next, is what resuming needs; its errors say more
  }
  if (stored === undefined || stored === asked) return;
  throw new CoinstreamError(
    'CONFIG',
    `cannot resume: the stored job used --archive ${String(stored)}, this run asks for --archive ${asked}, and its trades table would hold only part of the job's trades; run with --archive ${String(stored)}, or start over with --fresh`,
  );
}

/** Rows of `older` that `newer` does not replace (same asset and window), then `newer`. */
function newestByKey<R extends { asset: string; windowStart: number; windowEnd: number }>(older: R[], newer: R[]): R[] {
  if (older.length === 0) return newer;
  const key = (r: R) => `${r.asset}\u0000${r.windowStart}\u0000${r.windowEnd}`;
  const replaced = new Set(newer.map(key));
  return [...older.filter((r) => !replaced.has(key(r))), ...newer];
}

/** Records at the start of a batch that a store already holds. */
interface HeldRecords {
  trades: number;
  rejected: number;
  /** The batch also holds records the store does not: from it on, the store is caught up. */
  caughtUp: boolean;
}

interface AheadStore {
  sink: Sink;
  /** The store's own positions: it holds every record up to these. */
  holds: Record<string, SourcePosition>;
  caughtUp: boolean;
  /** Of the batch being filled. */
  held: HeldRecords;
}

/** Whether the store holds the record of `source` that ends at `position`. */
function holds(store: AheadStore, source: string, position: SourcePosition): boolean {
  const upTo = store.holds[source];
  return upTo !== undefined && position.offset <= upTo.offset;
}

/**
 * The batch without the records a store already holds. Until the store has caught up, nothing of the
 * batch is for it: not its progress (if the process dies again meanwhile, the store's own progress
 * still says what it holds), and not its windows and trends either, which are earlier states of rows
 * the store holds in a later one (upserted, they turned final windows back into open ones with fewer
 * trades, and a later run resuming from that store's own progress never wrote them again). The batch
 * it catches up in carries the rows as of its end, at least as new as the store's.
 */
function withoutHeld(batch: OutputBatch, held: HeldRecords): OutputBatch {
  return {
    ...batch,
    trades: dropFirstTrades(batch.trades, held.trades),
    rejected: batch.rejected.slice(held.rejected),
    windows: held.caughtUp ? batch.windows : [],
    trends: held.caughtUp ? batch.trends : [],
    progress: held.caughtUp ? batch.progress : undefined,
  };
}

/**
 * The events up to `finish.positions`: a trades event cut where its source's position passes it, and
 * nothing of a source past it (or without one: a file the finishing store did not read). Sets
 * `finish.cut` when something was left for the next run.
 */
async function* upTo(events: AsyncIterable<SourceEvent>, finish: { positions: Record<string, SourcePosition>; cut: boolean }): AsyncGenerator<SourceEvent> {
  const within = (source: string, position: SourcePosition | undefined) => {
    const bound = finish.positions[source];
    return bound !== undefined && position !== undefined && position.offset <= bound.offset;
  };
  for await (const event of events) {
    if (event.kind === 'trades') {
      if (event.end !== undefined && within(event.source, event.end)) {
        yield event;
        continue;
      }
      let n = 0;
      while (n < event.trades.length && within(event.source, event.origins?.position?.(n))) n++;
      finish.cut = true;
      if (n > 0) yield sliceTrades(event, 0, n);
    } else if (event.kind === 'rejected') {
      if (within(event.source ?? event.rejected.source, event.end)) yield event;
      else finish.cut = true;
    } else {
      yield event;
    }
  }
}

/**
 * Orders two stored progresses by how far they read: negative when `a` is behind `b`, positive when
 * ahead, 0 when they read as far (or cannot tell: live feeds keep no positions). No progress is
 * behind any. Both hold a prefix of the same merged stream, so one's positions are all at or before
 * the other's.
 */
function comparePositions(a: Pick<StoredProgress, 'positions'> | null, b: Pick<StoredProgress, 'positions'> | null): number {
  if (a === null || b === null) return (a === null ? -1 : 0) - (b === null ? -1 : 0);
  let order = 0;
  for (const source of new Set([...Object.keys(a.positions), ...Object.keys(b.positions)])) {
    const d = (a.positions[source]?.offset ?? -1) - (b.positions[source]?.offset ?? -1);
    if (d !== 0) order ||= Math.sign(d);
  }
  return order;
}
