// `coinstream process`: a Kafka consumer group member. Each partition assigned to it (of the trade
// topic and of its dead-letter topic) runs as a job of its own, `GROUP/TOPIC/PARTITION`: a pipeline
// with one engine and its own watermark (a partition is an ordered log, so re-reading it decides the
// same way), writing to the same stores (DESIGN.md, Recovery). Its progress is committed with its rows
// in every store; the group's offsets are committed after that, for lag tools; on assignment a job
// resumes from the progress in the stores, not from the group's offsets.
import { Kafka, type KafkaConfig } from 'kafkajs';
import type { Clock } from '../core/clock.js';
import { CoinstreamError, UsageError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { EngineConfig } from '../engine/contract.js';
import { Pipeline, refuseOtherJobs, type PipelineObserver, type PipelineSummary } from '../pipeline/pipeline.js';
import type { ArchiveMode } from '../sinks/archive.js';
import type { OutputBatch, Sink } from '../sinks/contract.js';
import { SharedSink } from '../sinks/shared-sink.js';
import { describeConnection, rootMessage } from './client.js';
import { KafkaPartitionSource } from './partition-source.js';

export interface ProcessOptions {
  kafka: KafkaConfig;
  topic: string;
  /** The dead-letter topic whose rejections are kept too (null: none). */
  deadLetterTopic: string | null;
  group: string;
  sinks: Sink[];
  engine: EngineConfig;
  clock: Clock;
  logger: Logger;
  startingOffsets: 'earliest' | 'latest';
  maxOffsetsPerTrigger?: number;
  /** Process what the topics hold when the run starts, write everything final, and end. */
  availableNow: boolean;
  fresh: boolean;
  /** Whether the stores keep the accepted trades (--archive): part of each partition job's settings. */
  archive?: ArchiveMode;
  signal: AbortSignal;
  /** How often to log consumer lag, ms. */
  progressEveryMs?: number;
  /** Watchers for each partition's pipeline (metrics, the dashboard): called once per pipeline. */
  observers?: () => PipelineObserver[];
  /** Consumer lag per partition (`topic/partition` -> records), every progressEveryMs and at each batch. */
  onLag?(lag: Record<string, number>): void;
}

export interface ProcessSummary {
  partitions: number;
  accepted: number;
  rejected: number;
  batches: number;
}

interface PartitionJob {
  topic: string;
  partition: number;
  source: KafkaPartitionSource;
  stop: AbortController;
  done: Promise<PipelineSummary>;
  /**
   * Given up in a rebalance, then handed back by the next one while its last batch was still being
   * written: a new job starts once this one is done (it resumes from what this one stored).
   */
  restart?: boolean;
}

interface Offsets {
  low: number;
  high: number;
}

const key = (topic: string, partition: number) => `${topic}/${partition}`;

/** Times in a row the consumer may stop on an error kafkajs does not retry before process gives up. */
const MAX_REJOINS = 5;

/** kafkajs error types of a group offset commit refused because the group is rebalancing. */
const REBALANCE_ERRORS = new Set(['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID']);

export async function processTopics(o: ProcessOptions): Promise<ProcessSummary> {
  const { logger } = o;
  const kafka = new Kafka(o.kafka);
  const offsets = await topicOffsets(kafka, o.kafka, [o.topic, ...(o.deadLetterTopic ? [o.deadLetterTopic] : [])], o.deadLetterTopic, logger);
  const topics = [...offsets.keys()];
  const jobName = (topic: string, partition: number) => `${o.group}/${topic}/${partition}`;
  /** The group's partition jobs share the stores; any other job there (a `run`, another group) would mix with them. */
  const ofGroup = (job: string) => job.startsWith(`${o.group}/`);
  // Stores are shared by every partition's pipeline: opened once, one write at a time.
  const sinks = o.sinks.map((s) => new SharedSink(s));
  if (o.fresh) {
    for (const sink of sinks) await sink.open();
    try {
      for (const sink of sinks) refuseOtherJobs(sink.name, await sink.jobs?.(), `${o.group}/`, ofGroup, true);
      for (const [topic, parts] of offsets) for (const p of parts.keys()) for (const sink of sinks) await sink.clearJob?.(jobName(topic, p));
      logger.info({ group: o.group, topics }, `--fresh: cleared group "${o.group}" of ${topics.join(', ')} from ${sinks.map((s) => s.name).join(', ')}; starting over`);
    } finally {
      for (const sink of sinks) await sink.close();
    }
  }

  // maxWaitTimeInMs: a fetch of an idle partition returns within 1 s, so leaving the group (disconnect
  // waits for fetches in flight) takes at most that, not kafkajs' default 5 s. sessionTimeout: a member
  // that died without leaving (SIGKILL) holds its partitions until this expires; a restart waits for it
  // (10 s, Kafka's classic default, instead of kafkajs' 30 s).
  const summary: ProcessSummary = { partitions: 0, accepted: 0, rejected: 0, batches: 0 };

  /**
   * The stores --available-now reads progress from, opened on its first look and held open until the
   * run ends: a member that waits looks once a second, and reopening each time meant a new connection
   * pool (or DuckDB worker) per look.
   */
  const progressStores: Sink[] = [];

  /**
   * --available-now: the partitions whose job is not finished in every store up to the offset that
   * ended the partition when this run started (`topic/partition`). Any member may have finished them.
   */
  const unfinishedPartitions = async (): Promise<string[]> => {
    // A store whose open failed (retriable: the member looks again) is opened on the next look.
    for (const store of sinks) {
      if (store.readProgress === undefined || progressStores.includes(store)) continue;
      await store.open();
      progressStores.push(store);
    }
    const left = new Set<string>();
    for (const store of progressStores) {
      for (const [topic, parts] of offsets) {
        for (const [partition, range] of parts) {
          if (range.high <= range.low || left.has(key(topic, partition))) continue; // nothing to read there
          const progress = await store.readProgress!(jobName(topic, partition));
          // With no position: where its job started (--starting-offsets latest: at the end, nothing to read;
          // taken for the start, the member waited for ever for records it was told to skip).
          const read = progress?.positions[`kafka:${topic}/${partition}`]?.offset ?? (o.startingOffsets === 'latest' ? range.high : range.low);
          if (!progress?.finished || read < range.high) left.add(key(topic, partition));
        }
      }
    }
    return [...left];
  };

  /**
   * One membership of the group: a consumer, and a job per assigned partition, until the topics are
   * done (--available-now), the signal, a failure, or the consumer crashing on an error kafkajs does
   * not retry ('crashed': the jobs were stopped and their pending batches written; join again).
   */
  const member = async (): Promise<'done' | 'crashed'> => {
    // retry: kafkajs' own default (5 retries), except that a crash once this member is leaving does not
    // restart the consumer: after a broker outage a late crash did, after the disconnect, and the
    // consumer rejoined the group and held the process for ever after "done".
    const consumer = kafka.consumer({
      groupId: o.group, allowAutoTopicCreation: false, maxWaitTimeInMs: 1000, sessionTimeout: 10_000, heartbeatInterval: 3_000,
      retry: { retries: 5, restartOnFailure: async () => !leaving },
    });
    const jobs = new Map<string, PartitionJob>();
    /** The partitions the group gave this member in its latest assignment. */
    let owned = new Set<string>();
    /** This membership is ending (done, a signal, a crash): no job starts again. */
    let leaving = false;
    let disconnected = false;
    let failure: unknown = null;
    let crashed: Error | null = null;
    let assigned = false;
    let allDone: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (allDone = resolve));
    /** A look at the stores is under way (--available-now, every job of this member ended). */
    let checking = false;
    let waitingLogged = false;
    const checkDone = () => {
      if (failure || crashed) return allDone();
      if (!o.availableNow || !assigned || jobs.size > 0 || checking || leaving) return;
      // This member's jobs are done, but the topics may not be: a partition can be held by another
      // member, or by one that died and holds it until its session times out. Ending now would leave
      // that partition to nobody when the group hands it on (a two-member test lost one this way).
      // So --available-now ends when the stores say every partition is read to where it ended at start.
      checking = true;
      unfinishedPartitions().then(
        (left) => {
          checking = false;
          if (left.length === 0) return allDone();
          if (!waitingLogged) {
            waitingLogged = true;
            logger.info({ group: o.group, partitions: left }, `this member's partitions are done; waiting for ${left.join(', ')} (held by another member of group "${o.group}", or to be handed on when a departed member's session ends)`);
          }
          const retry = setTimeout(checkDone, 1000); // the stores are another process's to change: look again
          retry.unref();
        },
        (err: unknown) => {
          checking = false;
          if (err instanceof CoinstreamError && err.retriable) {
            // The store is away for a moment (a lost connection, a lock): look again, as for an unfinished partition.
            logger.warn({ group: o.group, err: err.message }, `could not read the stores' progress (${err.message}); trying again in 1 s`);
            setTimeout(checkDone, 1000).unref();
            return;
          }
          failure ??= err;
          allDone();
        },
      );
    };

    const start = (topic: string, partition: number) => {
      if (leaving) return; // the membership is ending: the group gives the partition to another member
      const range = offsets.get(topic)?.get(partition) ?? { low: 0, high: 0 };
      const stop = new AbortController();
      const source = new KafkaPartitionSource({
        topic,
        partition,
        deadLetter: topic !== o.topic,
        clock: o.clock,
        startOffset: o.startingOffsets === 'earliest' ? range.low : range.high,
        lowOffset: range.low,
        endOffset: o.availableNow ? range.high : undefined,
        maxPerTrigger: o.maxOffsetsPerTrigger,
        triggerMs: o.engine.triggerMs,
        seek: (offset) => consumer.seek({ topic, partition, offset: String(offset) }),
        pause: (paused) => (paused ? consumer.pause([{ topic, partitions: [partition] }]) : consumer.resume([{ topic, partitions: [partition] }])),
      });
      // After every store has committed a batch: the group's offset, for lag tools (never read back).
      const groupOffsets: Sink = {
        name: `group offsets ${key(topic, partition)}`,
        open: async () => undefined,
        close: async () => undefined,
        write: async (batch: OutputBatch) => {
          const position = batch.progress?.positions[source.name];
          if (!position) return;
          await consumer.commitOffsets([{ topic, partition, offset: String(position.offset) }]).catch((err: Error) => {
            // Refused while the group rebalances (the partition may be another member's now): normal.
            // kafkajs says so in three ways: REBALANCE_IN_PROGRESS, and ILLEGAL_GENERATION or
            // UNKNOWN_MEMBER_ID for a commit made with the generation that just ended.
            if (REBALANCE_ERRORS.has(String((err as { type?: unknown }).type)) || /rebalanc|generation id|not aware of this member/i.test(err.message)) return logger.debug({ topic, partition, err: err.message }, `group offset of ${key(topic, partition)} not committed: the group is rebalancing`);
            logger.warn({ topic, partition, err: err.message }, `committing the group offset of ${key(topic, partition)} failed (${err.message}); the stores hold the progress, lag tools lag behind`);
          });
        },
      };
      const pipeline = new Pipeline({
        sources: [source],
        sinks: [...sinks, groupOffsets],
        engine: o.engine,
        clock: o.clock,
        logger: logger.child({ topic, partition }),
        job: jobName(topic, partition),
        signal: stop.signal,
        fenced: true,
        archive: o.archive,
        sharesStoresWith: ofGroup,
        observers: o.observers?.() ?? [],
      });
      const job: PartitionJob = { topic, partition, source, stop, done: pipeline.run() };
      jobs.set(key(topic, partition), job);
      summary.partitions++;
      job.done.then(
        (s) => {
          summary.accepted += s.accepted;
          summary.rejected += Object.values(s.rejected).reduce((a, b) => a + b, 0);
          summary.batches += s.batches;
          if (jobs.get(key(topic, partition)) === job) jobs.delete(key(topic, partition));
          restartIfOwned(job);
          checkDone();
        },
        (err: unknown) => {
          const current = jobs.get(key(topic, partition)) === job;
          if (current) jobs.delete(key(topic, partition));
          if (err instanceof CoinstreamError && err.code === 'FENCED') {
            // Another member owns the partition now (or owned it meanwhile) and wrote it: what we held
            // was not written. Still ours (a rebalance handed it back): resume from what the stores hold.
            if (current && !stop.signal.aborted && !o.signal.aborted) {
              logger.info({ topic, partition }, `${key(topic, partition)}: another member wrote this partition meanwhile; resuming it from the stores`);
              start(topic, partition);
            } else {
              logger.info({ topic, partition }, `${key(topic, partition)}: given up to another member, which wrote it first; our pending batch is not needed`);
              restartIfOwned(job);
            }
            checkDone();
            return;
          }
          failure ??= err;
          checkDone();
        },
      );
    };

    /** A job stopped by a rebalance whose partition the next rebalance gave back: start it again. */
    const restartIfOwned = (job: PartitionJob) => {
      const k = key(job.topic, job.partition);
      if (!job.restart || !owned.has(k) || jobs.has(k) || leaving || o.signal.aborted) return;
      logger.info({ topic: job.topic, partition: job.partition }, `${k}: handed back by the group while its last batch was written; resuming it from the stores`);
      start(job.topic, job.partition);
    };

    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      // An assignment that arrives while this member leaves (it can, during disconnect) starts nothing.
      // One after the disconnect (kafkajs restarting the consumer it had scheduled before a broker
      // outage ended) is left at once: else the member held its partitions and the process ran on.
      if (leaving) {
        if (disconnected) void consumer.disconnect().catch(() => undefined);
        return;
      }
      const assignment = event.payload.memberAssignment as Record<string, number[]>;
      const now = new Set(Object.entries(assignment).flatMap(([topic, parts]) => parts.map((p) => key(topic, p))));
      owned = now;
      // Given up in a rebalance: its pending batch is written (a graceful stop), the new owner resumes from the stores.
      for (const [k, job] of jobs) if (!now.has(k)) job.stop.abort();
      const added: string[] = [];
      for (const [topic, parts] of Object.entries(assignment)) {
        for (const p of parts) {
          const existing = jobs.get(key(topic, p));
          if (existing) {
            // Still stopping from an earlier rebalance: a new job follows once it has written its batch.
            if (existing.stop.signal.aborted) existing.restart = true;
            continue;
          }
          start(topic, p);
          added.push(key(topic, p));
        }
      }
      assigned = true;
      logger.info({ group: o.group, assignment }, `group "${o.group}": assigned ${[...now].join(', ') || 'nothing'}${added.length ? ` (new: ${added.join(', ')})` : ''}`);
      checkDone();
    });
    consumer.on(consumer.events.CRASH, (event) => {
      // A crash while leaving (the disconnect racing a broker outage) ends nothing that is not ending.
      if (leaving) return;
      // kafkajs restarts the consumer itself after a retriable error; after another it has left the group.
      if (!event.payload.restart) crashed ??= event.payload.error;
      checkDone();
    });

    const lagLog = setInterval(() => {
      const lag = [...jobs.values()].map((j) => ({ partition: key(j.topic, j.partition), lag: Math.max(0, j.source.highWatermark - j.source.position) }));
      if (lag.length > 0) logger.info({ lag }, `consumer lag: ${lag.map((l) => `${l.partition} ${l.lag}`).join(', ')}`);
      o.onLag?.(Object.fromEntries(lag.map((l) => [l.partition, l.lag])));
    }, o.progressEveryMs ?? 10_000);
    lagLog.unref();

    const onAbort = () => allDone();
    o.signal.addEventListener('abort', onAbort, { once: true });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics, fromBeginning: o.startingOffsets === 'earliest' });
      await consumer.run({
        autoCommit: false,
        partitionsConsumedConcurrently: 8,
        eachBatch: async ({ batch }) => {
          const job = jobs.get(key(batch.topic, batch.partition));
          job?.source.push(batch.messages, Number(batch.highWatermark));
        },
      });
      if (o.signal.aborted) allDone();
      await finished;
    } finally {
      leaving = true;
      clearInterval(lagLog);
      o.signal.removeEventListener('abort', onAbort);
      for (const job of jobs.values()) job.stop.abort();
      await Promise.allSettled([...jobs.values()].map((j) => j.done));
      await consumer.disconnect().catch(() => undefined);
      disconnected = true;
    }
    if (failure) throw failure;
    if (crashed && !o.signal.aborted) {
      rejoinError = crashed;
      return 'crashed';
    }
    return 'done';
  };

  let rejoinError: Error | null = null;
  try {
    for (let attempt = 1; (await member()) === 'crashed'; attempt++) {
      const err = rejoinError as Error | null;
      if (attempt >= MAX_REJOINS) throw new CoinstreamError('SOURCE_UNREADABLE', `the Kafka consumer stopped ${attempt} times in a row, the last time on: ${err?.message}`, false, { cause: err });
      logger.warn({ group: o.group, attempt, err: err?.message }, `the Kafka consumer stopped (${err?.message}); every partition's pending batch is written; joining group "${o.group}" again (${attempt} of ${MAX_REJOINS - 1})`);
    }
  } finally {
    for (const store of progressStores) await store.close();
  }
  return summary;
}

/** Low and high watermarks of every partition of the topics; a missing topic is a usage error. */
async function topicOffsets(kafka: Kafka, config: KafkaConfig, topics: string[], optional: string | null, logger: Logger): Promise<Map<string, Map<number, Offsets>>> {
  const admin = kafka.admin();
  try {
    await admin.connect();
  } catch (err) {
    // As topics and ingest say it: which brokers, and the socket's own error (not kafkajs' wrapper alone).
    throw new CoinstreamError('SOURCE_UNREADABLE', `cannot reach Kafka at ${describeConnection(config)}: ${rootMessage(err)}`, true, { cause: err });
  }
  try {
    const out = new Map<string, Map<number, Offsets>>();
    // Asked about a topic that is not there, a broker that creates topics on first use (the default of
    // many) made it: `process --topic typo` created typo and typo.rejected and exited 0. Listed first.
    const existing = new Set(await admin.listTopics());
    for (const topic of topics) {
      let rows: { partition: number; high: string; low: string }[];
      try {
        if (!existing.has(topic)) throw new Error(`topic ${topic} does not exist`);
        rows = await admin.fetchTopicOffsets(topic);
      } catch (err) {
        const message = (err as Error).message;
        if (/does not host this topic-partition|unknown topic|not exist/i.test(message)) {
          if (topic === optional) {
            logger.warn({ topic }, `the dead-letter topic "${topic}" does not exist: reading only the trade topic (rejections of ingest, if any, stay out of rejected_trades)`);
            continue;
          }
          throw new UsageError(`topic "${topic}" does not exist on the brokers; create it (coinstream topics create --topic ${topic}) or name another with --topic`);
        }
        throw err;
      }
      out.set(topic, new Map(rows.map((r) => [r.partition, { low: Number(r.low), high: Number(r.high) }])));
      logger.debug({ topic, partitions: rows }, `topic ${topic}: ${rows.length} partitions`);
    }
    return out;
  } finally {
    await admin.disconnect();
  }
}
