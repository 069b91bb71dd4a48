// The test peer itself: librdkafka's mock cluster answers kafkajs (producer, consumer group) and kcat
// with the real protocol, and its fault switches do what the Kafka tests rely on.
import { spawnSync } from 'node:child_process';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kafkaUnavailable, startMockKafka, type MockKafka } from '../helpers/kafka-mock.js';

const why = kafkaUnavailable();
if (why && process.env.COINSTREAM_REQUIRE_SERVICES === '1') throw new Error(why);
if (why) console.log(`skipping the Kafka mock cluster tests: ${why}`);

describe.skipIf(why !== null)('kafka mock cluster', () => {
  let cluster: MockKafka;
  beforeAll(async () => {
    cluster = await startMockKafka(3);
  });
  afterAll(() => cluster?.stop());

  it('kafkajs produces and a consumer group reads every message; kcat reads them too', async () => {
    await cluster.createTopic('smoke', 3);
    const kafka = new Kafka({ clientId: 'smoke', brokers: cluster.brokers.split(','), logLevel: logLevel.NOTHING });
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: 'smoke', messages: Array.from({ length: 30 }, (_, i) => ({ key: `k${i % 5}`, value: `m${i}` })) });
    await producer.disconnect();

    const consumer = kafka.consumer({ groupId: 'smoke-group' });
    await consumer.connect();
    await consumer.subscribe({ topic: 'smoke', fromBeginning: true });
    const seen = new Set<string>();
    await new Promise<void>((done) => {
      void consumer.run({
        eachMessage: async ({ message }) => {
          seen.add(String(message.value));
          if (seen.size === 30) done();
        },
      });
    });
    await consumer.disconnect();
    expect(seen.size).toBe(30);

    const kcat = spawnSync('kcat', ['-b', cluster.brokers, '-C', '-t', 'smoke', '-e', '-q', '-f', '%s\\n'], { encoding: 'utf8', timeout: 30_000 });
    expect(kcat.status, kcat.stderr).toBe(0);
    expect(new Set(kcat.stdout.trim().split('\n'))).toEqual(seen);
  }, 60_000);
});
