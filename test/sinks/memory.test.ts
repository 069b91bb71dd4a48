// Bounded memory (issue 14, item 6): a long replay into DuckDB must not grow the process without bound.
// The RSS of a `coinstream run` of ~2M trades is sampled from outside (/proc/PID/status, every 10 ms)
// and the last quarter of the run is compared with the second: once the buffers are warm, RSS should
// plateau (DuckDB's memory_limit bounds its buffer pool; see src/sinks/duckdb/open.ts).
//
// Robust on a noisy 2-core machine: no timing assertion, quarters by sample count (so a slow run only
// gets more samples), and a generous margin: max(Q4) < max(Q2) x 1.5 + 64 MiB. An unbounded leak
// (a cache that keeps every batch, a buffer pool without a limit over a long enough run) still fails it.
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/sinks/duckdb/open.js';
import { killAll, spawnCoinstream } from '../helpers/process.js';
import { krakenRows } from '../oracle/inputs.js';

const N = 2_000_000;
const dir = mkdtempSync(join(tmpdir(), 'coinstream-memory-'));
const FILE = join(dir, 'trades.jsonl');
const STORE = join(dir, 'memory.duckdb');
const hasProc = existsSync('/proc/self/status');

/** The Kraken hour repeated with timestamps shifted hour by hour, bitcoin and ethereum taking turns (as bench/pipeline.bench.ts). */
async function makeInput(): Promise<void> {
  const hour = krakenRows();
  const out = createWriteStream(FILE);
  let written = 0;
  for (let rep = 0; written < N; rep++) {
    const eth = rep % 2 === 1;
    let chunk = '';
    for (const t of hour) {
      if (written >= N) break;
      const price = eth ? Math.round((t.price / 20) * 100) / 100 : t.price;
      chunk += JSON.stringify({ ...t, base: eth ? 'ethereum' : 'bitcoin', price, priceUsd: price, timestamp: t.timestamp + rep * 3_600_000 }) + '\n';
      written++;
    }
    if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

beforeAll(async () => {
  if (hasProc) await makeInput();
}, 120_000);

afterAll(() => {
  killAll();
  rmSync(dir, { recursive: true, force: true });
});

/** VmRSS of a process in MiB, or null once it is gone. */
function rssMiB(pid: number): number | null {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? null : Number(kb) / 1024;
  } catch {
    return null;
  }
}

const max = (xs: number[]) => Math.max(...xs);

describe.skipIf(!hasProc)('memory over a long replay into DuckDB', () => {
  it('RSS in the last quarter of a 2M-trade run stays within the second quarter x 1.5 + 64 MiB', async () => {
    const run = spawnCoinstream(['run', '--source', `replay:${FILE}`, '--speed', 'max', '--sink', `duckdb:${STORE}`, '--no-dashboard']);
    const pid = run.child.pid!;
    const samples: number[] = [];
    const timer = setInterval(() => {
      const rss = rssMiB(pid);
      if (rss !== null && rss > 0) samples.push(rss);
    }, 10); // often: the run takes ~2 s now (it took ~4 s when this sampled every 100 ms, and 20 samples was a given)
    const { code } = await run.exit;
    clearInterval(timer);
    expect(code, run.stderr().slice(-3000)).toBe(0);
    // Every trade was written: the run did the work whose memory is measured.
    expect(await queryRows(STORE, 'SELECT count(*)::INTEGER AS n FROM trade_log', { readOnly: true })).toEqual([{ n: N }]);

    expect(samples.length, 'too few RSS samples to compare quarters').toBeGreaterThanOrEqual(20);
    const q = Math.floor(samples.length / 4);
    const second = max(samples.slice(q, 2 * q));
    const last = max(samples.slice(3 * q));
    const curve = [0, 1, 2, 3].map((i) => Math.round(max(samples.slice(i * q, i === 3 ? undefined : (i + 1) * q))));
    expect(last, `RSS max per quarter (MiB): ${curve.join(', ')} over ${samples.length} samples`).toBeLessThan(second * 1.5 + 64);
  }, 300_000);
});
