// `coinstream ingest`: sources -> Kafka (DESIGN.md, "Command line"; the producer is src/kafka/ingest.ts).
import type { Clock } from '../core/clock.js';
import { UsageError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { parseByteSize } from '../core/size.js';
import { describeConnection, kafkaConfig, type KafkaFlags } from '../kafka/client.js';
import { ingest } from '../kafka/ingest.js';
import { deadLetterTopic } from '../kafka/message.js';
import { checkTopicName } from '../kafka/topics.js';
import { DEFAULT_LIVE_SOURCES, parseSourceSpecs, parseSpeed } from '../sources/spec.js';
import { shutdownSignal } from './signals.js';

export interface IngestFlags extends KafkaFlags {
  source?: string[];
  topic: string;
  deadLetterTopic?: string;
  idempotent: boolean;
  speed: string;
  maxLine: string;
}

export async function ingestCommand(flags: IngestFlags, deps: { clock: Clock; logger: Logger }): Promise<void> {
  const { clock, logger } = deps;
  // Everything that can be wrong with the command line is checked before anything starts.
  const topic = checkTopicName(flags.topic, '--topic');
  const dead = checkTopicName(flags.deadLetterTopic ?? deadLetterTopic(topic), '--dead-letter-topic');
  if (dead === topic) throw new UsageError(`--dead-letter-topic must differ from --topic (${topic}); the default is ${deadLetterTopic(topic)}`);
  const speed = parseSpeed(flags.speed);
  const maxLineBytes = parseByteSize(flags.maxLine, '--max-line');
  const config = kafkaConfig(flags, logger, 'coinstream-ingest');
  const specs = flags.source && flags.source.length > 0 ? flags.source : DEFAULT_LIVE_SOURCES;
  const sources = await parseSourceSpecs(specs, { clock, logger, maxLineBytes });
  logger.info({ brokers: describeConnection(config) }, `Kafka: ${describeConnection(config)}`);

  const shutdown = shutdownSignal(logger, 'sending what is buffered to Kafka, then exiting');
  try {
    const s = await ingest({ sources, kafka: config, topic, deadLetterTopic: dead, idempotent: flags.idempotent, speed, clock, logger, signal: shutdown.signal });
    const secs = s.durationMs / 1000;
    const how = s.reason === 'signal' ? 'stopped' : 'done';
    logger.info(
      { reason: s.reason, run: s.run, trades: s.trades, rejected: s.rejected, gaps: s.gaps, damaged: s.damaged, durationMs: s.durationMs, idempotent: s.idempotent },
      `${how}: ${s.trades} trades to ${topic}, ${s.rejected} rejected to ${dead}, ${s.gaps} gaps${s.damaged > 0 ? `, ${s.damaged} damaged source(s)` : ''} in ${secs.toFixed(1)} s (${Math.round(s.trades / Math.max(secs, 0.001))} trades/s)`,
    );
  } finally {
    shutdown.dispose();
  }
}
