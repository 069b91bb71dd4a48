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
import { queryRows } from '../../src/sinks/duckdb/open.js';
import { krakenRows } from '../oracle/inputs.js';

const dir = mkdtempSync(join(tmpdir(), 'coinstream-disk-full-'));
const small = join(dir, 'small');
const REQUIRE = process.env.COINSTREAM_REQUIRE_SERVICES === '1';

/** Mounts a 6 MiB tmpfs at `small`; the reason it could not, or null. */
function mountSmall(): string | null {
  try {
    execFileSync('mkdir', ['-p', small]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', small], { stdio: 'pipe' });
    return null;
  } catch (err) {
    return (err as Error).message.split('\n')[0];
  }
}
const cannotMount = mountSmall();
if (cannotMount) console.log(`disk-full test skipped: cannot mount a tmpfs here (${cannotMount})`);

afterAll(() => {
  if (!cannotMount) execFileSync('umount', [small]);
  rmSync(dir, { recursive: true, force: true });
});

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
  it.skipIf(cannotMount !== null && !REQUIRE)('fails with one line, keeps what was committed, and the same command finishes once there is room', async () => {
    expect(cannotMount, 'mounting a tmpfs').toBeNull();
    // ~300k trades: the Kraken hour, hour after hour, more than 6 MiB of store.
    const hour = krakenRows();
    const lines: string[] = [];
    for (let rep = 0; lines.length < 300_000; rep++) {
      for (const r of hour) lines.push(JSON.stringify({ ...r, timestamp: (r.timestamp as number) + rep * 3_600_000 }));
    }
    const file = join(dir, 'trades.jsonl');
    writeFileSync(file, lines.join('\n') + '\n');
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
    expect(stored.trades).toEqual([{ n: lines.length, distinct_trades: expect.any(Number), volume: expect.any(Number) }]);
    expect(stored).toEqual(await contents(reference));
  }, 120_000);
});
