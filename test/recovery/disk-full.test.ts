// A full disk under the DuckDB store (DESIGN.md, Recovery): the run fails with one line that says so
// (exit 1), the store keeps the batches committed before, and once there is room the same command
// goes on and ends equal to a run that never ran out of space.
//
// The full disk is a 6 MiB tmpfs, mounted for the test (the machines run as root). Where mounting is
// not allowed, the test says why and is skipped; with COINSTREAM_REQUIRE_SERVICES=1 (CI) it fails.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readDeltaTable } from '../../src/sinks/delta/reader.js';
import { queryRows } from '../../src/sinks/duckdb/open.js';
import { openStoreReader } from '../../src/sinks/read-store.js';
import { krakenRows } from '../oracle/inputs.js';

const dir = mkdtempSync(join(tmpdir(), 'coinstream-disk-full-'));
const REQUIRE = process.env.COINSTREAM_REQUIRE_SERVICES === '1';
const mounted: string[] = [];

/** Mounts a tmpfs of `size` at a new directory `name` in `dir`: its path, or the reason it could not. */
function mountSmall(name: string, size: string): { path: string } | { reason: string } {
  const path = join(dir, name);
  try {
    execFileSync('mkdir', ['-p', path]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', path], { stdio: 'pipe' });
    mounted.push(path);
    return { path };
  } catch (err) {
    return { reason: (err as Error).message.split('\n')[0] };
  }
}
const probe = mountSmall('probe', '64k');
const cannotMount = 'reason' in probe ? probe.reason : null;
if (cannotMount) console.log(`disk-full test skipped: cannot mount a tmpfs here (${cannotMount})`);

afterAll(() => {
  for (const path of mounted) execFileSync('umount', [path]);
  rmSync(dir, { recursive: true, force: true });
});

/** ~300k trades: the Kraken hour, hour after hour (more than the small disks below hold of any store). */
function tradesFile(): { file: string; count: number } {
  const file = join(dir, 'trades.jsonl');
  const hour = krakenRows();
  const lines: string[] = [];
  for (let rep = 0; lines.length < 300_000; rep++) {
    for (const r of hour) lines.push(JSON.stringify({ ...r, timestamp: (r.timestamp as number) + rep * 3_600_000 }));
  }
  writeFileSync(file, lines.join('\n') + '\n');
  return { file, count: lines.length };
}

/** The small disk for a test, failing the test if it cannot be had (it is skipped before that where mounting is not allowed). */
function smallDisk(name: string, size: string): string {
  const disk = mountSmall(name, size);
  if ('reason' in disk) throw new Error(`mounting a tmpfs: ${disk.reason}`);
  return disk.path;
}

function run(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', ['bin/coinstream.js', ...args], { maxBuffer: 64 << 20, env: { ...process.env, COINSTREAM_LOG_FORMAT: 'json' } }, (err, _stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stderr }),
    );
  });
}

/** Everything the store holds for the results, but the processing-time columns. */
async function contents(path: string) {
  const rows = (sql: string) => queryRows(path, sql, { readOnly: true });
  return {
    windows: await rows('SELECT * EXCLUDE (updated_at) FROM trade_windows ORDER BY asset, window_start'),
    trends: await rows('SELECT * FROM price_trends ORDER BY asset, window_start'),
    trades: await rows('SELECT count(*)::DOUBLE AS n, count(DISTINCT (timestamp, price, volume, direction))::DOUBLE AS distinct_trades, sum(volume) AS volume FROM trades'),
  };
}

describe('a full disk under the DuckDB store', () => {
  it.skipIf(cannotMount !== null && !REQUIRE)('DuckDB: fails with one line, keeps what was committed, and the same command finishes once there is room', async () => {
    const small = smallDisk('duckdb', '6m');
    const { file, count } = tradesFile();
    const args = (store: string) => ['run', '--source', `replay:${file}`, '--speed', 'max', '--sink', `duckdb:${store}`, '--no-dashboard'];

    const full = await run(args(join(small, 'x.duckdb')));
    expect(full.code, full.stderr).toBe(1);
    const last = full.stderr.trim().split('\n').pop()!;
    expect(last).toMatch(/^coinstream: failed: duckdb:\S+x\.duckdb: writing batch \d+ failed: .*No space left on device \[SINK_FAILED\]$/);
    // The failed COMMIT rolled its transaction back itself: no warning that a rollback failed.
    expect(full.stderr).not.toMatch(/rollback after a failed batch failed/);

    execFileSync('mount', ['-o', 'remount,size=256m', small]);
    const again = await run(args(join(small, 'x.duckdb')));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/resuming job \\"run\\" after batch \d+/);

    const reference = join(dir, 'reference.duckdb');
    expect((await run(args(reference))).code).toBe(0);
    const stored = await contents(join(small, 'x.duckdb'));
    expect(stored.trades).toEqual([{ n: count, distinct_trades: expect.any(Number), volume: expect.any(Number) }]);
    expect(stored).toEqual(await contents(reference));
  }, 120_000);

  it.skipIf(cannotMount !== null && !REQUIRE)('Delta: fails with one line naming the table and batch, and the same command finishes once there is room', async () => {
    const small = smallDisk('delta', '1500k');
    const { file, count } = tradesFile();
    const args = ['run', '--source', `replay:${file}`, '--speed', 'max', '--sink', `delta:${join(small, 'd')}`, '--delta-trades', '--no-dashboard'];

    const full = await run(args);
    expect(full.code, full.stderr).toBe(1);
    expect(full.stderr.trim().split('\n').pop()).toMatch(/^coinstream: failed: delta:\S+\/d\/\w+: writing batch \d+ failed: .*No space left on device \[SINK_FAILED\]$/);

    execFileSync('mount', ['-o', 'remount,size=256m', small]);
    const again = await run(args);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/resuming job \\"run\\" after batch \d+/);
    expect(await readDeltaTable(join(small, 'd', 'trades'), { columns: ['timestamp'] })).toHaveLength(count);

    // The windows as a reader sees them (the newest row per key) equal a run that had room throughout.
    const referenceArgs = args.map((a) => (a === `delta:${join(small, 'd')}` ? `delta:${join(dir, 'reference-delta')}` : a));
    expect((await run(referenceArgs)).code).toBe(0);
    const windows = async (spec: string) => {
      const reader = await openStoreReader(spec);
      try {
        return (await reader.windowsBetween({ from: -Infinity, to: Infinity })).map(({ updatedAt: _, ...w }) => w);
      } finally {
        await reader.close();
      }
    };
    const stored = await windows(`delta:${join(small, 'd')}`);
    expect(stored.reduce((n, w) => n + w.trades, 0)).toBe(count);
    expect(stored).toEqual(await windows(`delta:${join(dir, 'reference-delta')}`));
  }, 120_000);
});
