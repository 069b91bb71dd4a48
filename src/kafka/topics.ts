// The topics coinstream uses (DESIGN.md: `coincap_trade`, 3 partitions, and its dead-letter topic):
// creating them and describing them through kafkajs' admin client.
import type { Admin, ITopicConfig } from 'kafkajs';
import { CoinstreamError, UsageError } from '../core/errors.js';
import { formatDuration } from '../core/duration.js';
import type { Logger } from '../core/logger.js';

/** Kafka's rule for topic names: 1-249 of [a-zA-Z0-9._-], and not `.` or `..`. */
export function checkTopicName(name: string, flag: string): string {
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(name) || name === '.' || name === '..') {
    throw new UsageError(`${flag} "${name}" is not a Kafka topic name: use 1-249 letters, digits, '.', '_' or '-' (e.g. coincap_trade)`);
  }
  return name;
}

export interface TopicSettings {
  topic: string;
  deadLetterTopic: string;
  partitions: number;
  replicationFactor: number;
  /** retention.ms of both topics; undefined leaves the cluster's default. */
  retentionMs?: number;
}

export interface CreateResult {
  created: string[];
  existed: { topic: string; partitions: number }[];
}

/**
 * Creates the trade topic and its dead-letter topic where they are missing; one that exists already is
 * left as it is (success: running `topics create` twice is fine). The dead-letter topic gets one
 * partition per trade-topic partition too: rejections are few, but a flood of them (a feed changing its
 * format) should not queue behind one partition.
 */
export async function createTopics(admin: Admin, s: TopicSettings, logger: Logger): Promise<CreateResult> {
  const existing = await existingTopics(admin, [s.topic, s.deadLetterTopic]);
  const result: CreateResult = { created: [], existed: [] };
  const wanted: ITopicConfig[] = [];
  for (const topic of [s.topic, s.deadLetterTopic]) {
    if (existing.has(topic)) continue;
    const config: ITopicConfig = { topic, numPartitions: s.partitions, replicationFactor: s.replicationFactor };
    if (s.retentionMs !== undefined) config.configEntries = [{ name: 'retention.ms', value: String(s.retentionMs) }];
    wanted.push(config);
  }
  if (wanted.length > 0) {
    try {
      // false: another client created one of them in between. Either way they exist now.
      const made = await admin.createTopics({ topics: wanted, waitForLeaders: true, timeout: 30_000 });
      if (!made) logger.info({ topics: wanted.map((t) => t.topic) }, 'a topic was created by someone else at the same time');
    } catch (err) {
      throw createFailure(err);
    }
    result.created.push(...wanted.map((t) => t.topic));
  }
  if (existing.size > 0) {
    const { topics } = await admin.fetchTopicMetadata({ topics: [...existing] });
    for (const name of [s.topic, s.deadLetterTopic]) {
      const t = topics.find((x) => x.name === name);
      if (t) result.existed.push({ topic: t.name, partitions: t.partitions.length });
    }
  }
  return result;
}

function createFailure(err: unknown): CoinstreamError {
  const e = err as Error & { type?: string };
  const message = e?.message ?? String(err);
  if (e?.name === 'KafkaJSBrokerNotFound') {
    // librdkafka's mock cluster names a controller that is not among its brokers, so CreateTopics has
    // nowhere to go; a real cluster whose metadata is inconsistent would say the same.
    return new CoinstreamError(
      'KAFKA_FAILED',
      `the cluster cannot take a CreateTopics request: ${message} (its metadata names a controller that is not among its brokers; a test cluster such as librdkafka's mock cannot create topics through the admin API; create them on the cluster's side)`,
      false,
      { cause: err },
    );
  }
  const type = e?.type ? ` (${e.type})` : '';
  const errors = (err as { errors?: { message?: string }[] }).errors;
  const detail = Array.isArray(errors) && errors.length > 0 ? `: ${errors.map((x) => x.message).join('; ')}` : '';
  return new CoinstreamError('KAFKA_FAILED', `creating the topics failed${type}: ${message}${detail}`, false, { cause: err });
}

/**
 * Which of `topics` exist. Asked through the list of all topics: a metadata request naming a topic
 * would create it on a cluster with auto-creation on.
 */
export async function existingTopics(admin: Admin, topics: string[]): Promise<Set<string>> {
  const all = new Set(await admin.listTopics());
  return new Set(topics.filter((t) => all.has(t)));
}

export interface PartitionRow {
  topic: string;
  partition: number;
  leader: number;
  replicas: number[];
  isr: number[];
  /** Watermarks, as kafkajs gives them (strings: Kafka offsets are 64-bit). */
  low: string;
  high: string;
}

export interface TopicDescription {
  topic: string;
  partitions: PartitionRow[];
  /** retention.ms where the cluster answered DescribeConfigs. */
  retentionMs?: number;
}

export interface Description {
  topics: TopicDescription[];
  missing: string[];
}

export async function describeTopics(admin: Admin, topics: string[], logger: Logger): Promise<Description> {
  const existing = await existingTopics(admin, topics);
  const missing = topics.filter((t) => !existing.has(t));
  const out: TopicDescription[] = [];
  if (existing.size === 0) return { topics: out, missing };
  const present = topics.filter((t) => existing.has(t));
  const metadata = await admin.fetchTopicMetadata({ topics: present });
  const retention = await retentionOf(admin, present, logger);
  for (const topic of present) {
    const meta = metadata.topics.find((t) => t.name === topic);
    const offsets = await admin.fetchTopicOffsets(topic);
    const rows: PartitionRow[] = (meta?.partitions ?? [])
      .map((p) => {
        const o = offsets.find((x) => x.partition === p.partitionId);
        return { topic, partition: p.partitionId, leader: p.leader, replicas: p.replicas, isr: p.isr, low: o?.low ?? '?', high: o?.high ?? '?' };
      })
      .sort((a, b) => a.partition - b.partition);
    const d: TopicDescription = { topic, partitions: rows };
    const r = retention.get(topic);
    if (r !== undefined) d.retentionMs = r;
    out.push(d);
  }
  return { topics: out, missing };
}

/** retention.ms per topic; empty where the cluster does not answer DescribeConfigs (said at debug). */
async function retentionOf(admin: Admin, topics: string[], logger: Logger): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  try {
    // 2 = ConfigResourceTypes.TOPIC (a number here, so that this file needs kafkajs' types only).
    const { resources } = await admin.describeConfigs({ resources: topics.map((name) => ({ type: 2, name, configNames: ['retention.ms'] })), includeSynonyms: false });
    for (const r of resources) {
      const entry = r.configEntries.find((c) => c.configName === 'retention.ms');
      const ms = Number(entry?.configValue);
      if (entry && Number.isFinite(ms)) out.set(r.resourceName, ms);
    }
  } catch (err) {
    logger.debug({ err: (err as Error).message }, 'the cluster did not describe the topics\' configs; retention left out');
  }
  return out;
}

/** The description as a small table, one row per partition. */
export function formatDescription(d: Description): string {
  const header = ['topic', 'partition', 'leader', 'replicas', 'isr', 'low', 'high', 'messages'];
  const rows: string[][] = [];
  for (const t of d.topics) {
    for (const p of t.partitions) {
      const count = /^\d+$/.test(p.low) && /^\d+$/.test(p.high) ? String(BigInt(p.high) - BigInt(p.low)) : '?';
      rows.push([p.topic, String(p.partition), String(p.leader), p.replicas.join(','), p.isr.join(','), p.low, p.high, count]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  const lines = [line(header), ...rows.map(line)];
  for (const t of d.topics) {
    const retention = t.retentionMs === undefined ? 'retention not reported by the cluster' : t.retentionMs < 0 ? 'retention unlimited' : `retention ${formatDuration(t.retentionMs)}`;
    lines.push(`${t.topic}: ${t.partitions.length} partition(s), ${retention}`);
  }
  for (const m of d.missing) lines.push(`${m}: does not exist`);
  return lines.join('\n') + '\n';
}
