// librdkafka's mock Kafka cluster for tests (test/kafka/mock-cluster.c, built here from Debian's
// librdkafka-dev with the system C compiler): the real Kafka protocol, in-process in a child, on
// loopback. Topics are created on the C side (this cluster cannot answer CreateTopics), and brokers can
// be taken down, brought up or slowed.
//
// Without librdkafka-dev or a C compiler the cluster cannot start: kafkaUnavailable() says why, so
// that a test file skips with that reason (and fails where COINSTREAM_REQUIRE_SERVICES=1, as in CI).
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const SOURCE = resolve('test/kafka/mock-cluster.c');
const BINARY = join(tmpdir(), 'coinstream-kafka-mock', 'mock-cluster');

let built: string | null | undefined;

/** Compiles the mock cluster once per machine (again when the C file is newer); the reason it cannot, or null. */
export function kafkaUnavailable(): string | null {
  if (built !== undefined) return built;
  if (existsSync(BINARY) && statSync(BINARY).mtimeMs >= statSync(SOURCE).mtimeMs) return (built = null);
  if (!existsSync('/usr/include/librdkafka/rdkafka_mock.h')) return (built = "librdkafka's mock cluster header is missing: apt-get install librdkafka-dev (.ci/run does)");
  mkdirSync(join(tmpdir(), 'coinstream-kafka-mock'), { recursive: true });
  const tmp = `${BINARY}.${process.pid}`;
  const cc = spawnSync('cc', [SOURCE, '-O1', '-o', tmp, '-lrdkafka'], { encoding: 'utf8' });
  if (cc.status !== 0) return (built = `building the Kafka mock cluster failed: ${cc.error?.message ?? cc.stderr}`);
  // Renamed into place: test files built in parallel never run a half-written binary.
  spawnSync('mv', ['-f', tmp, BINARY]);
  return (built = null);
}

export interface MockKafka {
  /** bootstrap servers, `127.0.0.1:PORT,...` */
  readonly brokers: string;
  createTopic(name: string, partitions: number): Promise<void>;
  /** Broker ids are 1..N. */
  brokerDown(id: number): Promise<void>;
  brokerUp(id: number): Promise<void>;
  setRtt(id: number, ms: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts a cluster of `brokers` brokers; resolves once it listens. */
export async function startMockKafka(brokers = 3): Promise<MockKafka> {
  const why = kafkaUnavailable();
  if (why) throw new Error(why);
  const child: ChildProcessWithoutNullStreams = spawn(BINARY, [String(brokers)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const lines = createInterface({ input: child.stdout });
  const waiting: ((line: string) => void)[] = [];
  const early: string[] = [];
  lines.on('line', (line) => {
    const next = waiting.shift();
    if (next) next(line);
    else early.push(line);
  });
  const nextLine = () =>
    new Promise<string>((done, fail) => {
      const queued = early.shift();
      if (queued !== undefined) return done(queued);
      const onExit = () => fail(new Error(`the Kafka mock cluster exited: ${stderr}`));
      child.once('exit', onExit);
      waiting.push((line) => {
        child.off('exit', onExit);
        done(line);
      });
    });
  const first = await nextLine();
  const m = /^bootstrap (\S+)$/.exec(first);
  if (!m) throw new Error(`the Kafka mock cluster said ${JSON.stringify(first)}: ${stderr}`);
  // One command at a time: answers come back in order.
  let chain = Promise.resolve();
  const command = (text: string) => {
    const run = chain.then(async () => {
      child.stdin.write(`${text}\n`);
      const answer = await nextLine();
      if (answer !== 'ok') throw new Error(`mock cluster: ${text}: ${answer}`);
    });
    chain = run.catch(() => undefined);
    return run;
  };
  return {
    brokers: m[1],
    createTopic: (name, partitions) => command(`topic ${name} ${partitions}`),
    brokerDown: (id) => command(`down ${id}`),
    brokerUp: (id) => command(`up ${id}`),
    setRtt: (id, ms) => command(`rtt ${id} ${ms}`),
    async stop() {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
