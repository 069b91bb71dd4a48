// npm run bench:latency [-- --seconds 20]
//
// Trade arrival -> row committed, as the product measures it (coinstream_trade_to_store_seconds, per
// sink): `coinstream run` replays the bundled Kraken hour at --speed 60 (about 45 trades/s, arriving
// as they did, 60x faster) into a new DuckDB file, once with --trigger 1s and once with --trigger 100ms.
// After --seconds of each, /metrics is read and p50/p99 are interpolated within the histogram's
// buckets, as Prometheus' histogram_quantile does.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const SECONDS = Number(arg('--seconds') ?? 20);
const root = resolve(new URL('..', import.meta.url).pathname);
const dir = mkdtempSync(join(tmpdir(), 'coinstream-latency-'));

interface Bucket {
  le: number;
  count: number;
}

/** The q-quantile of a cumulative histogram, linear within the bucket it falls in. */
function quantile(q: number, buckets: Bucket[]): number {
  const total = buckets[buckets.length - 1].count;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of buckets) {
    if (b.count >= rank) {
      if (!Number.isFinite(b.le)) return prevLe;
      return prevLe + ((b.le - prevLe) * (rank - prevCount)) / Math.max(1, b.count - prevCount);
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

async function measure(trigger: string): Promise<{ p50: number; p99: number; count: number }> {
  const store = join(dir, `latency-${trigger}.duckdb`);
  const child = spawn('node', [join(root, 'bin/coinstream.js'), 'run', '--source', `replay:${join(root, 'data/kraken-btcusd-2019-07-01.coincap.jsonl')}`, '--speed', '60', '--trigger', trigger, '--sink', `duckdb:${store}`, '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const url = await new Promise<string>((res, rej) => {
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      const m = /dashboard on (http:\/\/[^\s"]+)/.exec(stderr);
      if (m) res(m[1]);
    });
    child.on('exit', (code) => rej(new Error(`exited ${code} before the dashboard was up: ${stderr.slice(-2000)}`)));
  });
  await new Promise((r) => setTimeout(r, SECONDS * 1000)); // a bench: it samples for a set time by design
  const text = await (await fetch(`${url}metrics`)).text();
  child.kill('SIGINT');
  await new Promise((r) => child.on('exit', r));
  const buckets: Bucket[] = [];
  for (const m of text.matchAll(/^coinstream_trade_to_store_seconds_bucket\{le="([^"]+)",sink="duckdb:[^"]*"\} (\d+)$/gm)) {
    buckets.push({ le: m[1] === '+Inf' ? Infinity : Number(m[1]), count: Number(m[2]) });
  }
  if (buckets.length === 0) throw new Error(`no coinstream_trade_to_store_seconds for the DuckDB sink in /metrics:\n${text.slice(0, 3000)}`);
  buckets.sort((a, b) => a.le - b.le);
  return { p50: quantile(0.5, buckets), p99: quantile(0.99, buckets), count: buckets[buckets.length - 1].count };
}

console.log(`latency bench ${new Date().toISOString()}: ${cpus()[0]?.model ?? 'unknown cpu'} x${cpus().length}, Node ${process.version}; ${SECONDS} s per trigger, --speed 60, DuckDB sink`);
for (const trigger of ['1s', '100ms']) {
  const r = await measure(trigger);
  console.log(`--trigger ${trigger.padEnd(6)} trade arrival -> committed in DuckDB: p50 ${(r.p50 * 1000).toFixed(0)} ms, p99 ${(r.p99 * 1000).toFixed(0)} ms (${r.count} sampled trades)`);
}
rmSync(dir, { recursive: true, force: true });
