// `coinstream process`: Kafka -> engines (one per partition) -> the same sinks as `run`.
import type { Clock } from '../core/clock.js';
import { UsageError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { kafkaConfig, type KafkaFlags } from '../kafka/client.js';
import { deadLetterTopic } from '../kafka/message.js';
import { processTopics } from '../kafka/process.js';
import { checkTopicName } from '../kafka/topics.js';
import { RetryingSink } from '../sinks/retrying-sink.js';
import { withArchive } from '../sinks/archive.js';
import { parseSinkSpecs, whereRejectionsGo } from '../sinks/spec.js';
import { archiveFromFlags, engineConfigFromFlags, type EngineFlags } from './run.js';
import { shutdownSignal } from './signals.js';
import { parsePort, startLiveDashboard, type DashboardFlags } from './dashboard.js';

export interface ProcessFlags extends EngineFlags, KafkaFlags, DashboardFlags {
  topic: string;
  group: string;
  sink?: string[];
  startingOffsets: string;
  maxOffsetsPerTrigger?: string;
  availableNow?: boolean;
  deadLetterTopic?: string;
  deadLetter: boolean;
  fresh?: boolean;
  deltaTrades?: boolean;
  /** `trades` (default) or `none`, as for `run`. */
  archive?: string;
}

/** `process` writes to a DuckDB file and the console unless told otherwise, like `run`. */
const DEFAULT_PROCESS_SINKS = ['duckdb:./coinstream.duckdb', 'console'];

export async function processCommand(flags: ProcessFlags, deps: { clock: Clock; logger: Logger }): Promise<void> {
  const { clock, logger } = deps;
  const engine = engineConfigFromFlags(flags);
  // Checked as ingest and topics check them: `--topic ""` went on to Kafka and failed there (exit 1).
  const topic = checkTopicName(flags.topic, '--topic');
  const dead = flags.deadLetter ? checkTopicName(flags.deadLetterTopic ?? deadLetterTopic(topic), '--dead-letter-topic') : null;
  // As ingest refuses it: the dead-letter input was read as the trade topic again, and dropped without a word.
  if (dead === topic) throw new UsageError(`--dead-letter-topic must differ from --topic (${topic}); the default is ${deadLetterTopic(topic)}`);
  if (flags.startingOffsets !== 'earliest' && flags.startingOffsets !== 'latest') {
    throw new UsageError(`--starting-offsets "${flags.startingOffsets}" must be earliest or latest`);
  }
  let maxOffsetsPerTrigger: number | undefined;
  if (flags.maxOffsetsPerTrigger !== undefined) {
    maxOffsetsPerTrigger = Number(flags.maxOffsetsPerTrigger);
    if (!Number.isInteger(maxOffsetsPerTrigger) || maxOffsetsPerTrigger < 1) throw new UsageError(`--max-offsets-per-trigger "${flags.maxOffsetsPerTrigger}" must be a whole number >= 1`);
  }
  if (!flags.group) throw new UsageError('--group must name the consumer group');
  const kafka = kafkaConfig(flags, logger, `coinstream-process-${flags.group}`);
  const { archive, deltaTrades } = archiveFromFlags(flags, logger);
  const delta = { trades: deltaTrades };
  const stores = parseSinkSpecs(flags.sink && flags.sink.length > 0 ? flags.sink : DEFAULT_PROCESS_SINKS, logger, { delta });

  const sinks = withArchive(stores, archive).map((sink) => new RetryingSink(sink, { clock, logger }));

  parsePort(flags.port);
  const dashboard = await startLiveDashboard(flags, { clock, logger, trendSpanMs: engine.trendSpanMs });
  const shutdown = shutdownSignal(logger, 'writing every partition\'s current windows, then leaving the group');
  try {
    const started = clock.now();
    const summary = await processTopics({
      kafka,
      topic,
      deadLetterTopic: dead,
      group: flags.group,
      sinks,
      engine,
      clock,
      logger,
      startingOffsets: flags.startingOffsets,
      maxOffsetsPerTrigger,
      availableNow: flags.availableNow === true,
      fresh: flags.fresh === true,
      archive,
      signal: shutdown.signal,
      observers: dashboard.observers,
      onLag: (lag) => {
        dashboard.live?.setConsumerLag(lag);
        for (const [partition, records] of Object.entries(lag)) dashboard.metrics?.consumerLag(partition, records);
      },
    });
    logger.info(
      { ...summary, ms: clock.now() - started },
      `done: ${summary.accepted} trades aggregated from ${summary.partitions} partitions in ${summary.batches} batches; ${summary.rejected} rejected (${whereRejectionsGo(stores)})`,
    );
  } finally {
    shutdown.dispose();
    await dashboard.close();
  }
}
