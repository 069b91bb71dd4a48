// `coinstream ingest` against librdkafka's mock cluster (3 brokers), read back with kcat, an
// independent client: every trade exactly once, keyed and partitioned by asset, with the run/seq
// headers; rejected lines on the dead-letter topic; an outage waited out; a stop without brokers.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseTrade } from '../../src/core/parse-trade.js';
import { tradeToJson } from '../../src/core/trade.js';
import { HEADER } from '../../src/kafka/message.js';
import { kafkaUnavailable, startMockKafka, type MockKafka } from '../helpers/kafka-mock.js';
import { freePort, killAll, spawnCoinstream } from '../helpers/process.js';
import { BAD_LINES, krakenRows, severalAssets } from '../oracle/inputs.js';

const why = kafkaUnavailable();
if (why && process.env.COINSTREAM_REQUIRE_SERVICES === '1') throw new Error(why);
if (why) console.log(`skipping the Kafka ingest tests: ${why}`);

interface Record {
  partition: number;
  offset: number;
  key: string | null;
  payload: string;
  headers: Map<string, string>;
}

/** Everything in a topic, read by kcat (JSON envelopes: headers come as [key, value, ...]). */
function kcat(brokers: string, topic: string): Record[] {
  const r = spawnSync('kcat', ['-b', brokers, '-C', '-t', topic, '-e', '-q', '-J'], { encoding: 'utf8', timeout: 60_000, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`kcat: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const m = JSON.parse(line) as { partition: number; offset: number; key: string | null; payload: string; headers?: string[] };
      const headers = new Map<string, string>();
      for (let i = 0; m.headers && i < m.headers.length; i += 2) headers.set(m.headers[i], m.headers[i + 1]);
      return { partition: m.partition, offset: m.offset, key: m.key, payload: m.payload, headers };
    });
}

/** The input's verdicts as the contract gives them: the trade message of each good line, the text of each bad one. */
function expected(lines: string[]): { trades: string[]; rejected: string[] } {
  const trades: string[] = [];
  const rejected: string[] = [];
  for (const line of lines) {
    if (line.trim() === '') continue;
    const r = parseTrade(line);
    if (r.ok) trades.push(tradeToJson(r.trade));
    else rejected.push(line);
  }
  return { trades, rejected };
}

const sorted = (xs: string[]) => [...xs].sort();

/** Checks the trade topic: each expected trade once, key = base, an asset in one partition, seq rising per partition. */
function checkTrades(records: Record[], want: string[], run: string): void {
  expect(records.length).toBe(want.length);
  // Every value is a valid trade message, read back by another client.
  const values = records.map((r) => {
    const p = parseTrade(r.payload);
    expect(p.ok, r.payload).toBe(true);
    if (!p.ok) throw new Error(p.detail);
    expect(r.key).toBe(p.trade.base);
    return tradeToJson(p.trade);
  });
  expect(sorted(values)).toEqual(sorted(want));
  const partitionOf = new Map<string, Set<number>>();
  const lastSeq = new Map<number, number>();
  for (const r of [...records].sort((a, b) => a.partition - b.partition || a.offset - b.offset)) {
    const set = partitionOf.get(r.key!) ?? new Set();
    set.add(r.partition);
    partitionOf.set(r.key!, set);
    expect(r.headers.get(HEADER.run)).toBe(run);
    expect(r.headers.get(HEADER.source)).toMatch(/^replay:/);
    expect(Number(r.headers.get(HEADER.receivedAt))).toBeGreaterThan(Date.UTC(2020, 0, 1));
    const seq = Number(r.headers.get(HEADER.seq));
    expect(Number.isSafeInteger(seq)).toBe(true);
    expect(seq).toBeGreaterThan(lastSeq.get(r.partition) ?? -1);
    lastSeq.set(r.partition, seq);
  }
  for (const [asset, partitions] of partitionOf) expect([asset, partitions.size]).toEqual([asset, 1]);
}

function runIdOf(stderr: string): string {
  const m = /"run":"([0-9a-f-]{36})"/.exec(stderr);
  if (!m) throw new Error(`no run id in ${stderr}`);
  return m[1];
}

describe.skipIf(why !== null)('coinstream ingest (Kafka mock cluster)', () => {
  let cluster: MockKafka;
  const dir = mkdtempSync(join(tmpdir(), 'coinstream-ingest-'));
  beforeAll(async () => {
    cluster = await startMockKafka(3);
  });
  afterEach(() => killAll());
  afterAll(() => cluster?.stop());

  it('replays a file of several assets: every trade exactly once, by asset, with headers; bad lines on the dead-letter topic', async () => {
    await cluster.createTopic('coincap_trade', 3);
    await cluster.createTopic('coincap_trade.rejected', 3);
    // Three assets (bitcoin, ethereum, solana: real Kraken trades relabelled), a bad line every 300.
    const lines: string[] = [];
    severalAssets(1).forEach((row, i) => {
      lines.push(JSON.stringify(row));
      if (i % 300 === 150) lines.push(BAD_LINES[Math.floor(i / 300) % BAD_LINES.length]);
    });
    const file = join(dir, 'several.jsonl');
    writeFileSync(file, lines.join('\n') + '\n');
    const want = expected(lines);
    expect(want.rejected.length).toBeGreaterThan(10);

    const run = spawnCoinstream(['ingest', '--source', `replay:${file}`, '--speed', 'max', '--brokers', cluster.brokers]);
    const { code } = await run.exit;
    expect(code, run.stderr()).toBe(0);
    const stderr = run.stderr();
    expect(stderr).toMatch(/falling back to a plain producer.*run\/seq headers/);
    expect(stderr).toContain(`"msg":"done: ${want.trades.length} trades to coincap_trade, ${want.rejected.length} rejected to coincap_trade.rejected, 0 gaps in `);
    const id = runIdOf(stderr);

    checkTrades(kcat(cluster.brokers, 'coincap_trade'), want.trades, id);

    const dead = kcat(cluster.brokers, 'coincap_trade.rejected');
    expect(sorted(dead.map((r) => r.payload))).toEqual(sorted(want.rejected));
    for (const r of dead) {
      expect(r.headers.get(HEADER.reason)).toMatch(/^(malformed|invalid)$/);
      expect(r.headers.get(HEADER.detail)).toMatch(/^line \d+: ./);
      expect(r.headers.get(HEADER.run)).toBe(id);
      expect(r.headers.get(HEADER.source)).toBe(`replay:${file}`);
      expect(Number.isSafeInteger(Number(r.headers.get(HEADER.seq)))).toBe(true);
    }
    // One sequence over both topics: no number twice.
    const seqs = [...kcat(cluster.brokers, 'coincap_trade'), ...dead].map((r) => Number(r.headers.get(HEADER.seq)));
    expect(new Set(seqs).size).toBe(want.trades.length + want.rejected.length);
  }, 120_000);

  it('waits while every broker is down (the sources wait once the buffer is full), then delivers everything', async () => {
    await cluster.createTopic('outage', 3);
    await cluster.createTopic('outage.rejected', 3);
    // More trades than the buffer holds (50,000), so that the sources must wait.
    const rows = krakenRows();
    const assets = ['bitcoin', 'ethereum', 'solana', 'cardano'];
    const lines: string[] = [];
    for (let i = 0; lines.length < 60_000; i++) {
      const row = rows[i % rows.length];
      lines.push(JSON.stringify({ ...row, base: assets[i % assets.length], timestamp: row.timestamp + Math.floor(i / rows.length) * 3_600_000 }));
    }
    const file = join(dir, 'outage.jsonl');
    writeFileSync(file, lines.join('\n') + '\n');
    for (const id of [1, 2, 3]) await cluster.brokerDown(id);

    const run = spawnCoinstream(['ingest', '--source', `replay:${file}`, '--speed', 'max', '--brokers', cluster.brokers, '--topic', 'outage']);
    await run.waitFor('stderr', /Kafka is unreachable \(/);
    await run.waitFor('stderr', /the sources wait until there is room/);
    expect(run.stderr()).not.toMatch(/"msg":"done/);
    for (const id of [1, 2, 3]) await cluster.brokerUp(id);
    await run.waitFor('stderr', /Kafka is reachable again after/, 60_000);
    const { code } = await run.exit;
    expect(code, run.stderr()).toBe(0);
    expect(run.stderr()).toMatch(/resuming the sources after waiting/);
    expect(run.stderr()).toContain(`"msg":"done: 60000 trades to outage, 0 rejected to outage.rejected`);
    checkTrades(kcat(cluster.brokers, 'outage'), expected(lines).trades, runIdOf(run.stderr()));
  }, 180_000);

  it('with no broker to reach, retries; SIGTERM then exits 1 saying what was not delivered', async () => {
    const port = await freePort();
    const run = spawnCoinstream(['ingest', '--source', 'replay:data/kraken-btcusd-2019-07-01.coincap.jsonl', '--speed', 'max', '--brokers', `127.0.0.1:${port}`]);
    await run.waitFor('stderr', /Kafka is unreachable \(.*ECONNREFUSED/);
    // The 10-second progress line counts the batch being retried as buffered (it said 672 of 2672).
    const progress = await run.waitFor('stderr', /"msg":"ingest: 0 trades delivered \(0\/s\), \d+ buffered"/, 30_000);
    expect(progress).toMatch(/, 2672 buffered"$/);
    run.child.kill('SIGTERM');
    const { code } = await run.exit;
    expect(code).toBe(1);
    expect(run.stderr()).toMatch(/coinstream: failed: stopped while Kafka was unreachable \(.*\); 2672 trades and 0 rejected lines read were not delivered/);
    expect(run.stderr()).not.toMatch(/"msg":"(done|stopped):/);
  }, 60_000);

  it('bad usage exits 2 with one line', async () => {
    for (const [args, why] of [
      [['--brokers', 'localhost'], /--brokers "localhost": "localhost" is not HOST:PORT/],
      [['--brokers', 'a:1', '--topic', 'bad topic'], /--topic "bad topic" is not a Kafka topic name/],
      [['--brokers', 'a:1', '--topic', 't', '--dead-letter-topic', 't'], /--dead-letter-topic must differ/],
      [['--brokers', 'a:1', '--sasl-mechanism', 'plain'], /set COINSTREAM_KAFKA_USERNAME and COINSTREAM_KAFKA_PASSWORD/],
      [['--brokers', 'a:1', '--source', 'replay:/nonexistent.jsonl'], /replay file not found/],
    ] as const) {
      const run = spawnCoinstream(['ingest', ...args], { COINSTREAM_KAFKA_USERNAME: '', COINSTREAM_KAFKA_PASSWORD: '' });
      const { code } = await run.exit;
      expect(code, run.stderr()).toBe(2);
      expect(run.stderr()).toMatch(why);
    }
  }, 60_000);
});
