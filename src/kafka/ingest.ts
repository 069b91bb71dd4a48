// The producer behind `coinstream ingest` (DESIGN.md): sources -> Kafka, one trade per message.
//
// - A trade: topic `coincap_trade`, key = its base asset (so one asset stays in one partition, in
//   order), value = tradeToJson(trade), headers (message.ts): source, receive time, this run's id and a
//   sequence number 0, 1, 2, ... by which `process` drops a message a retried produce wrote twice.
// - A rejected input line: the dead-letter topic, value = the raw text, headers + reason and detail.
// - Messages go out in batches (2,000 messages or 50 ms, whichever comes first; kafkajs groups a
//   batch by partition with a copy per message, quadratic, so 10,000 was slower), gzip-compressed,
//   acks=all, one batch in flight at a time (so each partition receives the run's messages in order).
// - While the brokers cannot be reached, the batch is retried with backoff for as long as it takes;
//   meanwhile reading goes on into a bounded buffer, and once that is full the sources wait (an async
//   iteration that is not resumed: a replay stops reading, a websocket is paused). Nothing is dropped.
//   A stop (signal) while Kafka is unreachable gives up after a grace period and says how much was
//   not delivered: exit 1, never success.
import { logSourceStatus } from '../sources/log-status.js';
import { randomUUID } from 'node:crypto';
import kafkajs, { type KafkaConfig, type Message, type Producer, type TopicMessages } from 'kafkajs';
import { backoffDelay, type BackoffOptions } from '../core/backoff.js';
import type { Clock } from '../core/clock.js';
import { CoinstreamError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { tradeToJson } from '../core/trade.js';
import type { Source, SourceEvent } from '../sources/contract.js';
import { mergeByEventTime, mergeEvents } from '../sources/merge.js';
import { paceByEventTime } from '../sources/pace.js';
import { writeMeta } from './message.js';

const { Kafka, CompressionTypes, Partitioners } = kafkajs;

export interface IngestOptions {
  sources: Source[];
  kafka: KafkaConfig;
  topic: string;
  deadLetterTopic: string;
  /** Try kafkajs' idempotent producer first (falls back to a plain one where the cluster cannot grant a producer id). */
  idempotent: boolean;
  /** Replay pace: times real time; Infinity as fast as possible. */
  speed: number;
  clock: Clock;
  logger: Logger;
  /** Aborting it stops reading; what is buffered is delivered, then run() returns. */
  signal?: AbortSignal;
  /** Messages per produce request (default 2,000). */
  batchMessages?: number;
  /** How long the first message of a batch may wait for more (default 50 ms). */
  lingerMs?: number;
  /** Messages buffered before the sources wait (default 50,000). */
  maxBuffered?: number;
  /** Retry schedule while the brokers are unreachable (default 0.5 s doubling to 10 s). */
  backoff?: BackoffOptions;
  /** After a stop, how long failed deliveries are still retried before giving up (default 5 s). */
  stopGraceMs?: number;
  /** Progress line interval (default 10 s). */
  progressMs?: number;
}

export interface IngestSummary {
  run: string;
  reason: 'end-of-input' | 'signal';
  /** Delivered (acknowledged by the brokers). */
  trades: number;
  rejected: number;
  gaps: number;
  damaged: number;
  durationMs: number;
  idempotent: boolean;
}

interface Entry {
  /** 0: the trade topic, 1: the dead-letter topic. */
  to: 0 | 1;
  message: Message;
}

const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 10_000, factor: 2 };

/** kafkajs errors that mean "cannot reach the cluster right now", wherever they sit in the cause chain. */
const UNREACHABLE = new Set(['KafkaJSConnectionError', 'KafkaJSConnectionClosedError', 'KafkaJSRequestTimeoutError', 'KafkaJSNoBrokerAvailableError', 'KafkaJSLockTimeout']);

function causes(err: unknown): Error[] {
  const chain: Error[] = [];
  let e = err as (Error & { cause?: unknown; originalError?: unknown }) | undefined;
  while (e && typeof e === 'object' && chain.length < 10 && !chain.includes(e)) {
    chain.push(e);
    e = (e.cause ?? e.originalError) as typeof e;
  }
  return chain;
}

function isUnreachable(err: unknown): boolean {
  return causes(err).some((e) => UNREACHABLE.has(e.name));
}

/** Worth retrying: the cluster is unreachable, or kafkajs says the error is retriable (a leader moving, a topic being created). */
function isTransient(err: unknown): boolean {
  const chain = causes(err);
  if (chain.some((e) => UNREACHABLE.has(e.name) || e.name === 'KafkaJSBrokerNotFound' || e.name === 'KafkaJSMetadataNotLoaded' || e.name === 'KafkaJSTopicMetadataNotLoaded')) return true;
  const root = chain[chain.length - 1] as Error & { retriable?: boolean };
  return root?.retriable === true;
}

/** The innermost message: kafkajs wraps "connect ECONNREFUSED ..." in retry errors. */
function reasonOf(err: unknown): string {
  const chain = causes(err);
  const root = chain[chain.length - 1];
  return root?.message ?? String(err);
}

export class KafkaIngest {
  readonly run = randomUUID();
  private seq = 0;
  private queue: Entry[] = [];
  /** The batch being sent (or retried through an outage): buffered too, until Kafka has it. */
  private sending = 0;
  /** When the oldest message still queued arrived (roughly: a backlog is sent at once). */
  private oldestAt = 0;
  private closing = false;
  private failure: Error | undefined;
  private wakeSender: (() => void) | undefined;
  private wakeReader: (() => void) | undefined;
  private readonly stop = new AbortController();
  private stoppedAt: number | undefined;
  private outageSince: number | undefined;
  private producer: Producer | undefined;
  private connected = false;
  private announcedConnect = false;
  private idempotentInUse = false;
  private readonly kafka: InstanceType<typeof Kafka>;
  private readonly counts = { trades: 0, rejected: 0, gaps: 0, damaged: 0, queuedTrades: 0, queuedRejected: 0 };
  private readonly batchMessages: number;
  private readonly lingerMs: number;
  private readonly maxBuffered: number;
  private pricesSkipped = false;

  constructor(private readonly o: IngestOptions) {
    this.batchMessages = o.batchMessages ?? 2_000;
    this.lingerMs = o.lingerMs ?? 50;
    this.maxBuffered = Math.max(o.maxBuffered ?? 50_000, this.batchMessages);
    // Few retries inside kafkajs: the outer loop retries for as long as it takes, and says so.
    this.kafka = new Kafka({ ...o.kafka, retry: { initialRetryTime: 300, maxRetryTime: 3000, retries: 3 } });
  }

  async runIngest(): Promise<IngestSummary> {
    const { logger, clock, signal } = this.o;
    const started = clock.now();
    const onOuterAbort = () => this.requestStop();
    if (signal?.aborted) this.requestStop();
    signal?.addEventListener('abort', onOuterAbort, { once: true });
    let lastProgress = { at: started, trades: 0 };
    const progress = setInterval(() => {
      const now = clock.now();
      const rate = ((this.counts.trades - lastProgress.trades) * 1000) / Math.max(1, now - lastProgress.at);
      lastProgress = { at: now, trades: this.counts.trades };
      const buffered = this.queue.length + this.sending;
      logger.info({ trades: this.counts.trades, rejected: this.counts.rejected, buffered, ratePerS: Math.round(rate) }, `ingest: ${this.counts.trades} trades delivered (${Math.round(rate)}/s), ${buffered} buffered`);
    }, this.o.progressMs ?? 10_000);
    progress.unref();
    logger.info(
      { run: this.run, topic: this.o.topic, deadLetterTopic: this.o.deadLetterTopic, sources: this.o.sources.map((s) => s.name) },
      `ingest started: ${this.o.sources.map((s) => s.name).join(', ')} -> ${this.o.topic} (run ${this.run})`,
    );
    const sender = this.sendLoop().catch((err: unknown) => {
      this.failure = err as Error;
      this.stop.abort();
      this.wakeReader?.();
    });
    try {
      await this.readLoop();
      this.closing = true;
      this.wakeSender?.();
      await sender;
      if (this.failure) throw this.failure;
      return {
        run: this.run,
        reason: this.stoppedAt === undefined ? 'end-of-input' : 'signal',
        trades: this.counts.trades,
        rejected: this.counts.rejected,
        gaps: this.counts.gaps,
        damaged: this.counts.damaged,
        durationMs: clock.now() - started,
        idempotent: this.idempotentInUse,
      };
    } finally {
      // On a failure: what is buffered is still sent, but only for the grace period of a stop.
      this.requestStop();
      this.closing = true;
      this.wakeSender?.();
      await sender;
      clearInterval(progress);
      signal?.removeEventListener('abort', onOuterAbort);
      await this.disconnect();
    }
  }

  private requestStop(): void {
    if (this.stoppedAt !== undefined) return;
    this.stoppedAt = this.o.clock.now();
    this.stop.abort();
    this.wakeReader?.();
    this.wakeSender?.();
  }

  // ---- reading -------------------------------------------------------------------------------

  private openStreams(): AsyncIterable<SourceEvent> {
    const { sources, clock } = this.o;
    const signal = this.stop.signal;
    const streams = sources.filter((s) => !s.bounded).map((s) => s.events(signal));
    const files = sources.filter((s) => s.bounded);
    if (files.length > 0) streams.unshift(paceByEventTime(mergeByEventTime(files.map((s) => s.events(signal))), { speed: this.o.speed, clock, signal }));
    return mergeEvents(streams);
  }

  private async readLoop(): Promise<void> {
    const { logger, clock } = this.o;
    for await (const event of this.openStreams()) {
      switch (event.kind) {
        case 'trades': {
          const at = event.receivedAt ?? clock.now();
          const source = event.source;
          for (const t of event.trades) {
            const headers = writeMeta({ source, receivedAt: t.receivedAt ?? at, run: this.run, seq: this.seq++ });
            this.enqueue({ to: 0, message: { key: t.base, value: tradeToJson(t), headers } });
          }
          this.counts.queuedTrades += event.trades.length;
          break;
        }
        case 'rejected': {
          const r = event.rejected;
          const headers = writeMeta({ source: r.source, receivedAt: r.receivedAt, run: this.run, seq: this.seq++, reason: r.reason, detail: r.detail });
          this.enqueue({ to: 1, message: { key: r.source, value: r.raw, headers } });
          this.counts.queuedRejected++;
          break;
        }
        case 'gap':
        case 'damaged':
        case 'connected':
        case 'disconnected':
          if (event.kind === 'gap') this.counts.gaps++;
          if (event.kind === 'damaged') this.counts.damaged++;
          logSourceStatus(logger, event);
          break;
        case 'price':
          if (!this.pricesSkipped) {
            this.pricesSkipped = true;
            logger.info({ source: event.source }, `${event.source}: prices are not trades; they are not sent to Kafka`);
          }
          break;
        case 'heartbeat':
          break;
      }
      if (this.queue.length >= this.maxBuffered) await this.waitForRoom();
      if (this.failure || this.stop.signal.aborted) break;
    }
  }

  private enqueue(entry: Entry): void {
    if (this.queue.length === 0) {
      this.oldestAt = this.o.clock.now();
      this.queue.push(entry);
      this.wakeSender?.();
      return;
    }
    this.queue.push(entry);
    if (this.queue.length === this.batchMessages) this.wakeSender?.();
  }

  /** The sources wait until half the buffer has gone out; a wait longer than 1 s (or during an outage) is logged. */
  private async waitForRoom(): Promise<void> {
    const { logger, clock } = this.o;
    const started = clock.now();
    let announced = false;
    const announce = () => {
      announced = true;
      const why = this.outageSince !== undefined ? 'Kafka is unreachable' : 'Kafka is behind';
      logger.warn({ buffered: this.queue.length }, `${why}: ${this.queue.length} messages buffered; the sources wait until there is room (nothing is dropped)`);
    };
    const timer = this.outageSince !== undefined ? (announce(), undefined) : clock.setTimeout(announce, 1000);
    while (this.queue.length > this.maxBuffered / 2 && !this.failure && !this.stop.signal.aborted) {
      await new Promise<void>((resolve) => (this.wakeReader = resolve));
      this.wakeReader = undefined;
    }
    timer?.cancel();
    if (announced) logger.info({ waitedMs: clock.now() - started, buffered: this.queue.length }, `resuming the sources after waiting ${((clock.now() - started) / 1000).toFixed(1)} s for Kafka`);
  }

  // ---- sending -------------------------------------------------------------------------------

  private async sendLoop(): Promise<void> {
    for (;;) {
      const batch = await this.nextBatch();
      if (batch === null) return;
      await this.deliver(batch);
      if (this.queue.length <= this.maxBuffered / 2) this.wakeReader?.();
    }
  }

  /** The next batch once it is full, its first message has lingered long enough, or reading is over; null when all is sent. */
  private async nextBatch(): Promise<Entry[] | null> {
    const { clock } = this.o;
    for (;;) {
      if (this.failure) return null;
      if (this.queue.length >= this.batchMessages) break;
      if (this.closing) {
        if (this.queue.length === 0) return null;
        break;
      }
      let wait = Infinity;
      if (this.queue.length > 0) {
        wait = this.oldestAt + this.lingerMs - clock.now();
        if (wait <= 0) break;
      }
      await new Promise<void>((resolve) => {
        this.wakeSender = resolve;
        if (wait !== Infinity) {
          const t = clock.setTimeout(resolve, wait);
          const done = resolve;
          this.wakeSender = () => {
            t.cancel();
            done();
          };
        }
      });
      this.wakeSender = undefined;
    }
    const batch = this.queue.length <= this.batchMessages ? this.queue : this.queue.slice(0, this.batchMessages);
    this.queue = this.queue.length <= this.batchMessages ? [] : this.queue.slice(this.batchMessages);
    if (this.queue.length > 0) this.oldestAt = this.o.clock.now() - this.lingerMs; // a backlog goes out at once
    return batch;
  }

  private async deliver(batch: Entry[]): Promise<void> {
    const topicMessages: TopicMessages[] = [];
    const trades: Message[] = [];
    const rejected: Message[] = [];
    for (const e of batch) (e.to === 0 ? trades : rejected).push(e.message);
    if (trades.length > 0) topicMessages.push({ topic: this.o.topic, messages: trades });
    if (rejected.length > 0) topicMessages.push({ topic: this.o.deadLetterTopic, messages: rejected });
    this.sending = batch.length;
    try {
      await this.sendWithRetries(batch, topicMessages, trades.length, rejected.length);
    } finally {
      this.sending = 0;
    }
  }

  /** Sends one batch, retrying through an outage with backoff until it is in or the stop's grace runs out. */
  private async sendWithRetries(batch: Entry[], topicMessages: TopicMessages[], nTrades: number, nRejected: number): Promise<void> {
    const { logger, clock } = this.o;
    const backoff = this.o.backoff ?? DEFAULT_BACKOFF;
    const grace = this.o.stopGraceMs ?? 5000;
    for (let failures = 0; ; ) {
      try {
        const producer = await this.connectedProducer();
        await producer.sendBatch({ topicMessages, acks: -1, compression: CompressionTypes.GZIP, timeout: 30_000 });
        this.counts.trades += nTrades;
        this.counts.rejected += nRejected;
        if (this.outageSince !== undefined) {
          const secs = ((clock.now() - this.outageSince) / 1000).toFixed(1);
          logger.info({ outageMs: clock.now() - this.outageSince, buffered: this.queue.length }, `Kafka is reachable again after ${secs} s; sending the ${this.queue.length + batch.length} buffered messages`);
          this.outageSince = undefined;
        }
        return;
      } catch (err) {
        if (!isTransient(err)) {
          throw new CoinstreamError('SINK_FAILED', `Kafka refused a batch of ${batch.length} messages: ${reasonOf(err)}${this.undelivered(batch.length)}`, false, { cause: err });
        }
        failures++;
        this.connected = false; // connect() again before the next try (a no-op where kafkajs still is)
        const reason = reasonOf(err);
        const delay = backoffDelay(failures, backoff, Math.random);
        if (this.outageSince === undefined) {
          this.outageSince = clock.now();
          logger.warn({ reason, buffered: this.queue.length + batch.length }, `Kafka is unreachable (${reason}); retrying with backoff, ${this.queue.length + batch.length} messages buffered (the sources wait once ${this.maxBuffered} are)`);
        } else {
          logger.debug({ reason, failures, retryInMs: delay }, 'Kafka still unreachable; retrying');
        }
        if (this.stoppedAt !== undefined && clock.now() - this.stoppedAt >= grace) {
          throw new CoinstreamError('SINK_FAILED', `stopped while Kafka was unreachable (${reason})${this.undelivered(batch.length)}`, true, { cause: err });
        }
        // A stop cuts the wait short: one more try, then the grace period decides.
        const signal = this.stoppedAt === undefined ? this.stop.signal : undefined;
        const wait = this.stoppedAt === undefined ? delay : Math.min(delay, Math.max(0, grace - (clock.now() - this.stoppedAt)));
        try {
          await clock.sleep(wait, signal);
        } catch {
          logger.debug('stop requested during the retry wait: trying once more now');
        }
      }
    }
  }

  private undelivered(inFlight: number): string {
    const trades = this.counts.queuedTrades - this.counts.trades;
    const rejected = this.counts.queuedRejected - this.counts.rejected;
    return `; ${trades} trades and ${rejected} rejected lines read were not delivered (${inFlight} in the failed batch)`;
  }

  /** The producer, connected: idempotent if asked for and the cluster grants a producer id, else plain. */
  private async connectedProducer(): Promise<Producer> {
    const { logger } = this.o;
    if (this.producer === undefined) {
      const idempotent = this.o.idempotent;
      this.producer = this.kafka.producer({ idempotent, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: true });
      this.idempotentInUse = idempotent;
    }
    if (this.connected) return this.producer;
    try {
      await this.producer.connect();
    } catch (err) {
      if (!this.idempotentInUse || isUnreachable(err)) throw err;
      // Connected, but no producer id (librdkafka's mock cluster: "Broker 0 not found"): go on without.
      logger.warn(
        { reason: reasonOf(err) },
        `the cluster cannot grant an idempotent producer id (${reasonOf(err)}); falling back to a plain producer: a retried batch may be written twice, and \`process\` drops such re-sent messages by their run/seq headers`,
      );
      await this.producer.disconnect().catch((e: unknown) => logger.debug({ err: (e as Error).message }, 'closing the idempotent producer failed'));
      this.idempotentInUse = false;
      this.producer = this.kafka.producer({ idempotent: false, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: true });
      await this.producer.connect();
    }
    this.connected = true;
    if (this.announcedConnect) return this.producer;
    this.announcedConnect = true;
    logger.info({ idempotent: this.idempotentInUse }, `connected to Kafka${this.idempotentInUse ? ' (idempotent producer)' : ''}`);
    return this.producer;
  }

  private async disconnect(): Promise<void> {
    if (!this.producer) return;
    try {
      await this.producer.disconnect();
    } catch (err) {
      this.o.logger.debug({ err: (err as Error).message }, 'disconnecting the producer failed');
    }
  }
}

export function ingest(options: IngestOptions): Promise<IngestSummary> {
  return new KafkaIngest(options).runIngest();
}
