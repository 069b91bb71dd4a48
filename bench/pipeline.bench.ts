// npm run bench [-- --trades N]
//
// Throughput of replay -> engine -> DuckDB over N trades (default 1,000,000), next to a bare
// JSON.parse loop over the same bytes in the same process. The ratio is what to compare between
// runs and machines: absolute numbers depend on the machine (printed with them).
//
// Input: the bundled real Kraken hour, repeated with its timestamps shifted hour by hour and
// alternately relabelled as a second asset, so windows, trends and eviction all do real work.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { writeKrakenHours } from './input.js';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../src/core/clock.js';
import { silentLogger } from '../src/core/logger.js';
import { DEFAULT_ENGINE_CONFIG } from '../src/engine/contract.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { DuckDBSink } from '../src/sinks/duckdb/duckdb-sink.js';
import { WrappedSink } from '../src/sinks/wrapped-sink.js';
import type { Sink } from '../src/sinks/contract.js';
import { ReplaySource } from '../src/sources/replay.js';
import { WindowEngine } from '../src/engine/window-engine.js';
import { queryRows } from '../src/sinks/duckdb/open.js';
import { spawnSync } from 'node:child_process';
import { parseSinkSpec } from '../src/sinks/spec.js';
import { PEERS } from '../test/sinks/sql-peers.js';

const argIndex = process.argv.indexOf('--trades');
const N = argIndex > 0 ? Number(process.argv[argIndex + 1]) : 1_000_000;
const dir = mkdtempSync(join(tmpdir(), 'coinstream-bench-'));
const file = join(dir, 'trades.jsonl');

/** Hours alternate between bitcoin and ethereum (prices / 20). */
function makeInput(): Promise<void> {
  return writeKrakenHours(file, N, (t, rep) => {
    const eth = rep % 2 === 1;
    const price = eth ? Math.round((t.price / 20) * 100) / 100 : t.price;
    return { ...t, base: eth ? 'ethereum' : 'bitcoin', price, priceUsd: price };
  });
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


/**
 * Opens the sinks, then starts the clock: opening a store (a worker thread, DuckDB) is a one-off cost,
 * reported apart. They are opened before the run, not by it: a run whose stores are new files reads
 * while they open (Pipeline.storesStartEmpty), and timing from the end of the open would then leave
 * that reading out (it did: keeping progress came out 130 ms "cheaper" than not keeping it).
 */
async function pipeline(sinks: Sink[]): Promise<{ ms: number; openMs: number; cpuMs: number; batches: number }> {
  const source = new ReplaySource({ path: file });
  const cpuStart = process.cpuUsage();
  const openStart = performance.now();
  for (const sink of sinks) await sink.open();
  const start = performance.now();
  const summary = await new Pipeline({ sources: [source], sinks: sinks.map(alreadyOpen), engine: DEFAULT_ENGINE_CONFIG, clock: systemClock, logger: silentLogger }).run();
  const end = performance.now();
  const cpu = process.cpuUsage(cpuStart);
  if (summary.accepted !== N) throw new Error(`pipeline accepted ${summary.accepted}, expected ${N}`);
  // CPU of every thread of the process (main, DuckDB worker, GC, libuv), open included.
  return { ms: end - start, openMs: start - openStart, cpuMs: (cpu.user + cpu.system) / 1000, batches: summary.batches };
}

/** An open sink as the pipeline sees it: its open() does nothing, and it no longer says it starts empty (its file is there). */
class AlreadyOpen extends WrappedSink {
  override open(): Promise<void> {
    return Promise.resolve();
  }
  override get startsEmpty(): Sink['startsEmpty'] {
    return undefined;
  }
}
const alreadyOpen = (sink: Sink): Sink => new AlreadyOpen(sink);

/** The same store with its progress hidden: the pipeline then keeps none (no positions, no snapshots). */
function withoutProgress(sink: Sink): Sink {
  return { name: sink.name, open: () => sink.open(), write: (b) => sink.write(b), close: () => sink.close() };
}

/**
 * Five paired rounds: each round runs the parse loop and the pipelines a second apart, so a slow spell
 * of this shared machine usually hits both sides of a ratio. Ratios are the median of the per-round
 * ratios, with their range; never the best of one side over the best of the other.
 */
const ROUNDS = 5;

const rate = (ms: number) => `${Math.round((N / ms) * 1000).toLocaleString('en-US')} trades/s`;

await makeInput();
console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} x${cpus().length}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}`);
console.log(`input: ${N.toLocaleString('en-US')} trades, ${(statSync(file).size / 2 ** 20).toFixed(1)} MiB JSONL`);
// Warm up the JIT on the parse path once, then alternate so neither side gets a warmer machine.
baseline();
const results = { baseline: [] as number[], engineOnly: [] as number[], duckdb: [] as number[], duckdbOpen: [] as number[], engineCpu: [] as number[], duckdbCpu: [] as number[], noProgress: [] as number[], batches: 0 };
const lastStore = join(dir, 'bench-kept.duckdb');
for (let round = 0; round < ROUNDS; round++) {
  results.baseline.push(baseline());
  const engineOnly = await pipeline([]);
  results.engineOnly.push(engineOnly.ms);
  results.engineCpu.push(engineOnly.cpuMs);
  // With and without progress (positions and an engine snapshot in every commit), alternating first.
  const runWith = async () => {
    const store = round === ROUNDS - 1 ? lastStore : join(dir, `bench-${round}.duckdb`);
    const withStore = await pipeline([new DuckDBSink(store, silentLogger)]);
    results.duckdb.push(withStore.ms);
    results.duckdbOpen.push(withStore.openMs);
    results.duckdbCpu.push(withStore.cpuMs);
    results.batches = withStore.batches;
    if (store !== lastStore) rmSync(store, { force: true });
  };
  const runWithout = async () => {
    const store = join(dir, `bench-np-${round}.duckdb`);
    results.noProgress.push((await pipeline([withoutProgress(new DuckDBSink(store, silentLogger))])).ms);
    rmSync(store, { force: true });
  };
  if (round % 2 === 0) {
    await runWith();
    await runWithout();
  } else {
    await runWithout();
    await runWith();
  }
}
const median = (xs: number[]) => {
  const sorted = [...xs].sort((x, y) => x - y);
  return sorted.length % 2 ? sorted[sorted.length >> 1] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
};
const spread = (xs: number[], digits = 0) => `${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}`;
/** Per round: parse-loop time / this path's time (above 1.0x: faster than a bare JSON.parse of the input). */
const ratios = (xs: number[]) => results.baseline.map((ms, i) => ms / xs[i]);
const line = (label: string, xs: number[], note = '') =>
  console.log(`${label.padEnd(30)} ${median(xs).toFixed(0).padStart(6)} ms (${spread(xs)})  ${rate(median(xs))}` + (xs === results.baseline ? '' : `  ratio median ${median(ratios(xs)).toFixed(2)}x (${spread(ratios(xs), 2)}x)${note}`));
console.log(`warm, in this process, ${ROUNDS} paired rounds (median, range):`);
line('bare JSON.parse loop', results.baseline);
line('replay -> engine (no sink)', results.engineOnly);
line('replay -> engine -> DuckDB', results.duckdb, '  (goal 1.0x)');
console.log(`  (+ ${median(results.duckdbOpen).toFixed(0)} ms once to start the DuckDB worker and open the store, not counted above; npm run bench:cold has whole processes)`);
console.log(`CPU used (all threads): ${(median(results.engineCpu) / 1000).toFixed(2)} s without a sink, ${(median(results.duckdbCpu) / 1000).toFixed(2)} s with DuckDB (open included)`);
console.log(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);

// Recovery (DESIGN.md): what keeping progress costs, what it weighs, and what a restart costs.
const extra = results.duckdb.map((ms, i) => ms - results.noProgress[i]);
console.log(`progress: DuckDB with progress ${median(results.duckdb).toFixed(0)} ms, without ${median(results.noProgress).toFixed(0)} ms (medians of ${ROUNDS});` +
  ` paired difference median ${median(extra).toFixed(0)} ms (range ${Math.min(...extra).toFixed(0)} to ${Math.max(...extra).toFixed(0)}) over ${results.batches} commits`);
const [state] = await queryRows(lastStore, `SELECT length(engine_state)::DOUBLE AS bytes, (SELECT count(DISTINCT asset) FROM trade_windows)::DOUBLE AS assets FROM stream_progress WHERE source = '*'`);
const engine = new WindowEngine(DEFAULT_ENGINE_CONFIG);
for (const t of readFileSync(file, 'utf8').split('\n', 200_000).filter(Boolean).map((l) => JSON.parse(l))) engine.ingest(t);
engine.collect(0);
const snapStart = performance.now();
const snapshotText = JSON.stringify(engine.snapshot());
const snapMs = performance.now() - snapStart;
const restoreStart = performance.now();
WindowEngine.restore(DEFAULT_ENGINE_CONFIG, JSON.parse(snapshotText));
const restoreMs = performance.now() - restoreStart;
console.log(`snapshot mid-stream (2 assets): ${snapshotText.length.toLocaleString('en-US')} bytes, ${(snapshotText.length / 2 / 1024).toFixed(1)} KiB per asset; taken + serialised in ${snapMs.toFixed(2)} ms, restored in ${restoreMs.toFixed(2)} ms; at the end of the job: ${state.bytes} bytes for ${state.assets} assets`);
// Restart on the N-trade store, as a user starts it: a whole process, cold. The job there is finished,
// so this is opening the store, reading the progress and restoring the engine, then stopping.
const bin = new URL('../bin/coinstream.js', import.meta.url).pathname;
const restarts: number[] = [];
for (let i = 0; i < 5; i++) {
  const t0 = performance.now();
  const r = spawnSync('node', [bin, 'run', '--source', `replay:${file}`, '--speed', 'max', '--sink', `duckdb:${lastStore}`, '--no-dashboard'], { encoding: 'utf8' });
  restarts.push(performance.now() - t0);
  if (r.status !== 0 || !/already finished/.test(r.stderr)) throw new Error(`restart on the finished store: exit ${r.status}: ${r.stderr}`);
}
console.log(`restart on the ${(N / 1e6).toFixed(1)}M-trade store (whole process, job already finished): median ${median(restarts).toFixed(0)} ms (range ${Math.min(...restarts).toFixed(0)}-${Math.max(...restarts).toFixed(0)}, 5 runs)`);

// The stores side by side: the first STORE_TRADES trades of the same input into each, one after the
// other in this run (MySQL and PostgreSQL take ~20 s per million here, so fewer trades and one round).
const STORE_TRADES = Math.min(N, 200_000);
const storeFile = join(dir, 'stores.jsonl');
writeFileSync(storeFile, readFileSync(file, 'utf8').split('\n', STORE_TRADES).join('\n') + '\n');
async function intoStore(spec: string): Promise<number> {
  const sinks = parseSinkSpec(spec, silentLogger, { delta: { trades: true } });
  for (const sink of sinks) await sink.open();
  const start = performance.now();
  const summary = await new Pipeline({ sources: [new ReplaySource({ path: storeFile })], sinks: sinks.map(alreadyOpen), engine: DEFAULT_ENGINE_CONFIG, clock: systemClock, logger: silentLogger }).run();
  const ms = performance.now() - start;
  if (summary.accepted !== STORE_TRADES) throw new Error(`${spec}: accepted ${summary.accepted}, expected ${STORE_TRADES}`);
  return ms;
}
console.log(`stores, ${STORE_TRADES.toLocaleString('en-US')} trades each, one round (open not counted):`);
console.log(`  duckdb       ${((STORE_TRADES / (await intoStore(`duckdb:${join(dir, 'stores.duckdb')}`))) * 1000).toFixed(0).padStart(8)} trades/s`);
for (const peer of PEERS) {
  const why = await peer.unreachable();
  if (why) {
    console.log(`  ${peer.kind.padEnd(12)} skipped: ${why}`);
    continue;
  }
  const db = await peer.create();
  try {
    console.log(`  ${peer.kind.padEnd(12)} ${((STORE_TRADES / (await intoStore(peer.url(db)))) * 1000).toFixed(0).padStart(8)} trades/s`);
  } finally {
    await peer.drop(db);
  }
}
for (const peer of PEERS) await peer.end();
console.log(`  delta        ${((STORE_TRADES / (await intoStore(`delta:${join(dir, 'stores-delta')}`))) * 1000).toFixed(0).padStart(8)} trades/s (with the trades archive, partitioned by date)`);
rmSync(dir, { recursive: true, force: true });
