// npm run bench [-- --trades N]
//
// Throughput of replay -> engine -> DuckDB over N trades (default 1,000,000), next to a bare
// JSON.parse loop over the same bytes in the same process. The ratio is what to compare between
// runs and machines: absolute numbers depend on the machine (printed with them).
//
// Input: the bundled real Kraken hour, repeated with its timestamps shifted hour by hour and
// alternately relabelled as a second asset, so windows, trends and eviction all do real work.
import { mkdtempSync, readFileSync, rmSync, statSync, createWriteStream } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../src/core/clock.js';
import { silentLogger } from '../src/core/logger.js';
import { DEFAULT_ENGINE_CONFIG } from '../src/engine/contract.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { DuckDBSink } from '../src/sinks/duckdb/duckdb-sink.js';
import type { Sink } from '../src/sinks/contract.js';
import { ReplaySource } from '../src/sources/replay.js';

const argIndex = process.argv.indexOf('--trades');
const N = argIndex > 0 ? Number(process.argv[argIndex + 1]) : 1_000_000;
const dir = mkdtempSync(join(tmpdir(), 'coinstream-bench-'));
const file = join(dir, 'trades.jsonl');

async function makeInput(): Promise<void> {
  const hour = readFileSync(new URL('../data/kraken-btcusd-2019-07-01.coincap.jsonl', import.meta.url), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  const out = createWriteStream(file);
  let written = 0;
  for (let rep = 0; written < N; rep++) {
    const shift = rep * 3_600_000;
    const eth = rep % 2 === 1;
    let chunk = '';
    for (const t of hour) {
      if (written >= N) break;
      const price = eth ? Math.round((t.price / 20) * 100) / 100 : t.price;
      chunk += JSON.stringify({ ...t, base: eth ? 'ethereum' : 'bitcoin', price, priceUsd: price, timestamp: t.timestamp + shift }) + '\n';
      written++;
    }
    if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

function baseline(): number {
  const text = readFileSync(file, 'utf8');
  const start = performance.now();
  let from = 0;
  let n = 0;
  let checksum = 0;
  for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', from)) {
    const v = JSON.parse(text.slice(from, nl));
    checksum += v.volume;
    n++;
    from = nl + 1;
  }
  const ms = performance.now() - start;
  if (n !== N || !(checksum > 0)) throw new Error(`baseline read ${n} lines, expected ${N}`);
  return ms;
}

/** Notes when every sink before it is open. */
class OpenTimer implements Sink {
  openedAt = 0;
  readonly name = 'open-timer';
  async open(): Promise<void> {
    this.openedAt = performance.now();
  }
  async write(): Promise<void> {}
  async close(): Promise<void> {}
}

/** Starts the clock once the sinks are open: opening a store (a worker thread, DuckDB) is a one-off cost, reported apart. */
async function pipeline(sinks: Sink[]): Promise<{ ms: number; openMs: number; cpuMs: number }> {
  const source = new ReplaySource({ path: file, speed: Infinity });
  const timer = new OpenTimer();
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  const summary = await new Pipeline({ sources: [source], sinks: [...sinks, timer], engine: DEFAULT_ENGINE_CONFIG, clock: systemClock, logger: silentLogger }).run();
  const end = performance.now();
  const cpu = process.cpuUsage(cpuStart);
  if (summary.accepted !== N) throw new Error(`pipeline accepted ${summary.accepted}, expected ${N}`);
  // CPU of every thread of the process (main, DuckDB worker, GC, libuv), open included.
  return { ms: end - timer.openedAt, openMs: timer.openedAt - start, cpuMs: (cpu.user + cpu.system) / 1000 };
}

/**
 * Best of five: these machines are shared, and a neighbour's burst should not decide a ratio (the bare
 * parse loop alone varies by up to 1.8x from round to round here). The per-round ratios are printed too.
 */
const ROUNDS = 5;

const rate = (ms: number) => `${Math.round((N / ms) * 1000).toLocaleString('en-US')} trades/s`;

await makeInput();
console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} x${cpus().length}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}`);
console.log(`input: ${N.toLocaleString('en-US')} trades, ${(statSync(file).size / 2 ** 20).toFixed(1)} MiB JSONL`);
// Warm up the JIT on the parse path once, then alternate so neither side gets a warmer machine.
baseline();
const results = { baseline: [] as number[], engineOnly: [] as number[], duckdb: [] as number[], duckdbOpen: [] as number[], engineCpu: [] as number[], duckdbCpu: [] as number[] };
for (let round = 0; round < ROUNDS; round++) {
  results.baseline.push(baseline());
  const engineOnly = await pipeline([]);
  results.engineOnly.push(engineOnly.ms);
  results.engineCpu.push(engineOnly.cpuMs);
  const store = join(dir, `bench-${round}.duckdb`);
  const withStore = await pipeline([new DuckDBSink(store, silentLogger)]);
  results.duckdb.push(withStore.ms);
  results.duckdbOpen.push(withStore.openMs);
  results.duckdbCpu.push(withStore.cpuMs);
  rmSync(store, { force: true });
}
const best = (xs: number[]) => Math.min(...xs);
const b = best(results.baseline);
const e = best(results.engineOnly);
const d = best(results.duckdb);
console.log(`bare JSON.parse loop           ${b.toFixed(0).padStart(6)} ms  ${rate(b)}`);
console.log(`replay -> engine (no sink)     ${e.toFixed(0).padStart(6)} ms  ${rate(e)}  ratio ${(b / e).toFixed(2)}x`);
console.log(`replay -> engine -> DuckDB     ${d.toFixed(0).padStart(6)} ms  ${rate(d)}  ratio ${(b / d).toFixed(2)}x  (goal 1.0x, floor 0.5x)`);
// Within one round the two ran a second apart, so a slow spell of the machine usually hits both.
const perRound = results.baseline.map((ms, i) => ms / results.duckdb[i]).sort((x, y) => x - y);
console.log(`  DuckDB ratio round by round: median ${perRound[perRound.length >> 1].toFixed(2)}x, range ${perRound[0].toFixed(2)}-${perRound[perRound.length - 1].toFixed(2)}x`);
console.log(`  (+ ${best(results.duckdbOpen).toFixed(0)} ms once to start the DuckDB worker and open the store, not counted above)`);
console.log(`CPU used (all threads): ${(best(results.engineCpu) / 1000).toFixed(2)} s without a sink, ${(best(results.duckdbCpu) / 1000).toFixed(2)} s with DuckDB (open included)`);
console.log(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
rmSync(dir, { recursive: true, force: true });
