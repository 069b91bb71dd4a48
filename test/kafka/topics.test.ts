// `coinstream topics create|describe` against librdkafka's mock cluster. That cluster cannot answer
// CreateTopics (its metadata names controller 0, which is none of its brokers), so `create` is tested
// for what it can show here: topics that exist are success, a missing one gives a clear error.
// Topics are made on the cluster's side (createTopic).
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { kafkaUnavailable, startMockKafka, type MockKafka } from '../helpers/kafka-mock.js';
import { killAll, spawnCoinstream } from '../helpers/process.js';

const why = kafkaUnavailable();
if (why && process.env.COINSTREAM_REQUIRE_SERVICES === '1') throw new Error(why);
if (why) console.log(`skipping the Kafka topics tests: ${why}`);

describe.skipIf(why !== null)('coinstream topics (Kafka mock cluster)', () => {
  let cluster: MockKafka;
  let kafka: Kafka;
  beforeAll(async () => {
    cluster = await startMockKafka(3);
    kafka = new Kafka({ clientId: 'topics-test', brokers: cluster.brokers.split(','), logLevel: logLevel.NOTHING });
  });
  afterEach(() => killAll());
  afterAll(() => cluster?.stop());

  async function topicsNow(): Promise<string[]> {
    const admin = kafka.admin();
    await admin.connect();
    try {
      return (await admin.listTopics()).sort();
    } finally {
      await admin.disconnect();
    }
  }

  it('describe: partitions, leaders, replicas and watermarks of the topic and its dead-letter topic', async () => {
    await cluster.createTopic('coincap_trade', 3);
    await cluster.createTopic('coincap_trade.rejected', 2);
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: 'coincap_trade', messages: Array.from({ length: 7 }, (_, i) => ({ key: `k${i}`, value: `v${i}` })) });
    await producer.send({ topic: 'coincap_trade.rejected', messages: [{ value: 'bad' }] });
    await producer.disconnect();

    const run = spawnCoinstream(['topics', 'describe', '--brokers', cluster.brokers]);
    const { code } = await run.exit;
    expect(code, run.stderr()).toBe(0);
    const lines = run.stdout().trim().split('\n');
    expect(lines[0].split(/\s+/)).toEqual(['topic', 'partition', 'leader', 'replicas', 'isr', 'low', 'high', 'messages']);
    const rows = lines.slice(1).map((l) => l.split(/\s+/)).filter((r) => r.length === 8);
    expect(rows.map((r) => `${r[0]}/${r[1]}`)).toEqual(['coincap_trade/0', 'coincap_trade/1', 'coincap_trade/2', 'coincap_trade.rejected/0', 'coincap_trade.rejected/1']);
    for (const r of rows) {
      expect(['1', '2', '3']).toContain(r[2]); // leader
      expect(r[3].split(',').sort()).toEqual(['1', '2', '3']); // replicas
      expect(r[5]).toBe('0'); // low watermark
    }
    const sum = (topic: string) => rows.filter((r) => r[0] === topic).reduce((n, r) => n + Number(r[7]), 0);
    expect(sum('coincap_trade')).toBe(7);
    expect(sum('coincap_trade.rejected')).toBe(1);
    expect(run.stdout()).toMatch(/^coincap_trade: 3 partition\(s\), retention/m);
  }, 60_000);

  it('describe of a topic that does not exist says so (exit 1) and does not create it', async () => {
    const before = await topicsNow();
    const run = spawnCoinstream(['topics', 'describe', '--brokers', cluster.brokers, '--topic', 'nowhere']);
    const { code } = await run.exit;
    expect(code).toBe(1);
    expect(run.stderr()).toMatch(/coinstream: failed: topic nowhere does not exist on .*; create it with `coinstream topics create --brokers .* --topic nowhere`/);
    expect(await topicsNow()).toEqual(before);
  }, 60_000);

  it('create: topics that exist already are success (exit 0, says so)', async () => {
    await cluster.createTopic('made', 3);
    await cluster.createTopic('made.rejected', 3);
    const run = spawnCoinstream(['topics', 'create', '--brokers', cluster.brokers, '--topic', 'made', '--partitions', '4']);
    const { code } = await run.exit;
    expect(code, run.stderr()).toBe(0);
    expect(run.stdout()).toBe('made already exists (3 partitions); it has 3 partitions, not 4: left as it is\nmade.rejected already exists (3 partitions); it has 3 partitions, not 4: left as it is\n');
  }, 60_000);

  it('create of a missing topic: this cluster cannot answer CreateTopics, and the error says why (exit 1)', async () => {
    const run = spawnCoinstream(['topics', 'create', '--brokers', cluster.brokers, '--topic', 'fresh', '--retention', '7d']);
    const { code } = await run.exit;
    expect(code).toBe(1);
    expect(run.stderr()).toMatch(/coinstream: failed: the cluster cannot take a CreateTopics request: Broker 0 not found .*create them on the cluster's side/);
  }, 60_000);

  it('bad usage exits 2', async () => {
    for (const [args, why] of [
      [['topics', 'create', '--brokers', cluster.brokers, '--partitions', '0'], /--partitions "0" must be a whole number >= 1/],
      [['topics', 'create', '--brokers', cluster.brokers, '--retention', '7'], /--retention: "7" is not a duration/],
      [['topics', 'list', '--brokers', cluster.brokers], /value 'list' is invalid for argument 'action'\. Allowed choices are create, describe/],
      [['topics', 'describe'], /--brokers/],
    ] as const) {
      const run = spawnCoinstream([...args], { COINSTREAM_BROKERS: '' });
      const { code } = await run.exit;
      expect(code, run.stderr()).toBe(2);
      expect(run.stderr()).toMatch(why);
    }
  }, 60_000);
});
