// `coinstream topics create|describe`: the trade topic and its dead-letter topic, through kafkajs' admin client.
import kafkajs from 'kafkajs';
import { UsageError } from '../core/errors.js';
import { parseDuration } from '../core/duration.js';
import type { Logger } from '../core/logger.js';
import { kafkaConfig, rootMessage, type KafkaFlags } from '../kafka/client.js';
import { deadLetterTopic } from '../kafka/message.js';
import { checkTopicName, createTopics, describeTopics, formatDescription } from '../kafka/topics.js';
import { CoinstreamError } from '../core/errors.js';

export const TOPIC_ACTIONS = ['create', 'describe'] as const;

export interface TopicsFlags extends KafkaFlags {
  topic: string;
  deadLetterTopic?: string;
  partitions: string;
  replicationFactor: string;
  retention?: string;
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new UsageError(`${flag} "${text}" must be a whole number >= 1`);
  return n;
}

export async function topicsCommand(action: string, flags: TopicsFlags, deps: { logger: Logger }): Promise<void> {
  const { logger } = deps;
  if (!(TOPIC_ACTIONS as readonly string[]).includes(action)) throw new UsageError(`topics ${action}: the action is create or describe`);
  const topic = checkTopicName(flags.topic, '--topic');
  const dead = checkTopicName(flags.deadLetterTopic ?? deadLetterTopic(topic), '--dead-letter-topic');
  if (dead === topic) throw new UsageError(`--dead-letter-topic must differ from --topic (${topic})`);
  const partitions = positiveInt(flags.partitions, '--partitions');
  const replicationFactor = positiveInt(flags.replicationFactor, '--replication-factor');
  const retentionMs = flags.retention === undefined ? undefined : parseDuration(flags.retention, '--retention');
  if (retentionMs === 0) throw new UsageError('--retention 0 would delete every message at once; give a duration like 7d');
  const config = kafkaConfig(flags, logger, 'coinstream-topics');

  const kafka = new kafkajs.Kafka({ ...config, retry: { retries: 3, initialRetryTime: 300, maxRetryTime: 3000 } });
  const admin = kafka.admin();
  try {
    await admin.connect();
  } catch (err) {
    throw new CoinstreamError('KAFKA_FAILED', `cannot reach Kafka at ${flags.brokers}: ${rootMessage(err)}`, true, { cause: err });
  }
  try {
    if (action === 'create') {
      const r = await createTopics(admin, { topic, deadLetterTopic: dead, partitions, replicationFactor, retentionMs }, logger);
      for (const t of r.created) process.stdout.write(`created ${t} (${partitions} partitions, replication factor ${replicationFactor})\n`);
      for (const t of r.existed) {
        const note = t.partitions !== partitions ? `; it has ${t.partitions} partitions, not ${partitions}: left as it is` : '';
        process.stdout.write(`${t.topic} already exists (${t.partitions} partitions)${note}\n`);
      }
    } else {
      const d = await describeTopics(admin, [topic, dead], logger);
      if (d.missing.includes(topic)) {
        throw new CoinstreamError('KAFKA_FAILED', `topic ${topic} does not exist on ${flags.brokers}; create it with \`coinstream topics create --brokers ${flags.brokers}${topic === 'coincap_trade' ? '' : ` --topic ${topic}`}\``);
      }
      process.stdout.write(formatDescription(d));
    }
  } catch (err) {
    if (err instanceof CoinstreamError) throw err;
    throw new CoinstreamError('KAFKA_FAILED', `topics ${action}: ${rootMessage(err)}`, false, { cause: err });
  } finally {
    await admin.disconnect();
  }
}

