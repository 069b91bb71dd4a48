// `--archive none` (issue 14, item 5): no store keeps the accepted trades, and nothing else changes.
// Two runs of the same input into two DuckDB files, one with the archive and one without, must hold
// the same windows, trends and rejects; the one without holds no trade (empty trade_log and
// trade_keys, which still exist) and the same finished progress.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/sinks/duckdb/open.js';
import { killAll, spawnCoinstream } from '../helpers/process.js';
import { BAD_LINES, krakenRows } from '../oracle/inputs.js';

const dir = mkdtempSync(join(tmpdir(), 'coinstream-archive-'));
const FILE = join(dir, 'trades.jsonl');

beforeAll(() => {
  // The real Kraken hour, then the same hour shifted and relabelled as a second asset, with the bad
  // lines in the middle: windows of two assets and some rejects.
  const rows = krakenRows();
  const second = rows.map((r) => JSON.stringify({ ...r, base: 'ethereum', timestamp: Number(r.timestamp) + 3_600_000 }));
  writeFileSync(FILE, [...rows.map((r) => JSON.stringify(r)), ...BAD_LINES, ...second].join('\n') + '\n');
});

afterAll(() => {
  killAll();
  rmSync(dir, { recursive: true, force: true });
});

async function runToEnd(args: string[], env: Record<string, string> = {}): Promise<string> {
  const run = spawnCoinstream(['run', '--source', `replay:${FILE}`, '--speed', 'max', '--no-dashboard', ...args], env);
  const { code } = await run.exit;
  expect(code, `${args.join(' ')}\n${run.stderr().slice(-3000)}`).toBe(0);
  return run.stderr();
}

// Every column but updated_at (the wall clock of the write); ordered by key.
const WINDOWS = `SELECT asset, window_start, window_end, trades, total_volume, total_amount, average_price, vwap, open, high, low, close, buy_volume, sell_volume, is_final
  FROM trade_windows ORDER BY asset, window_start, window_end`;
const TRENDS = 'SELECT * FROM price_trends ORDER BY asset, window_start, window_end';
const REJECTS = 'SELECT reason, count(*)::INTEGER AS n FROM rejected_trades GROUP BY reason ORDER BY reason';
const COUNTS = 'SELECT (SELECT count(*) FROM trade_log)::INTEGER AS log, (SELECT count(*) FROM trade_keys)::INTEGER AS keys';
const PROGRESS = "SELECT source, position, watermark, finished FROM stream_progress ORDER BY source";
const read = (store: string, sql: string) => queryRows(store, sql, { readOnly: true });

describe('--archive none', () => {
  const withArchive = join(dir, 'with.duckdb');
  const without = join(dir, 'without.duckdb');

  beforeAll(async () => {
    await Promise.all([runToEnd(['--sink', `duckdb:${withArchive}`]), runToEnd(['--sink', `duckdb:${without}`, '--archive', 'none'])]);
  }, 120_000);

  it('keeps no trade but the same windows, trends, rejects and progress as a run with the archive', async () => {
    const n = krakenRows().length * 2;
    expect(await read(withArchive, COUNTS)).toEqual([{ log: n, keys: 4 }]);
    expect(await read(without, COUNTS)).toEqual([{ log: 0, keys: 0 }]);

    const windows = await read(withArchive, WINDOWS);
    expect(windows.length).toBeGreaterThan(100);
    expect(new Set(windows.map((w) => w.asset))).toEqual(new Set(['bitcoin', 'ethereum']));
    expect(await read(without, WINDOWS)).toEqual(windows);
    expect(await read(without, TRENDS)).toEqual(await read(withArchive, TRENDS));
    const rejects = await read(withArchive, REJECTS);
    expect(rejects.length).toBeGreaterThan(0);
    expect(await read(without, REJECTS)).toEqual(rejects);
    const progress = await read(without, PROGRESS);
    expect(progress.some((p) => p.finished === true)).toBe(true);
    expect(progress).toEqual(await read(withArchive, PROGRESS));
  });

  it('a finished job run again without the archive resumes from the stored progress and writes nothing new', async () => {
    const before = await read(without, WINDOWS);
    await runToEnd(['--sink', `duckdb:${without}`, '--archive', 'none']);
    expect(await read(without, WINDOWS)).toEqual(before);
    expect(await read(without, COUNTS)).toEqual([{ log: 0, keys: 0 }]);
  });
});

describe('--archive flag', () => {
  it('reads COINSTREAM_ARCHIVE', async () => {
    const store = join(dir, 'env.duckdb');
    await runToEnd(['--sink', `duckdb:${store}`], { COINSTREAM_ARCHIVE: 'none' });
    expect(await read(store, COUNTS)).toEqual([{ log: 0, keys: 0 }]);
    expect((await read(store, WINDOWS)).length).toBeGreaterThan(100);
  });

  it('refuses a value other than trades or none (exit 2)', async () => {
    const run = spawnCoinstream(['run', '--source', `replay:${FILE}`, '--sink', 'console', '--archive', 'some']);
    expect((await run.exit).code).toBe(2);
    expect(run.stderr()).toMatch(/--archive/);
  });

  it('with --delta-trades: warns and writes no DIR/trades, the other Delta tables as usual', async () => {
    const delta = join(dir, 'delta');
    const stderr = await runToEnd(['--sink', `delta:${delta}`, '--delta-trades', '--archive', 'none']);
    expect(stderr).toMatch(/--delta-trades is ignored with --archive none/);
    expect(readdirSync(delta).sort()).toEqual(['price_trends', 'rejected_trades', 'trade_windows']);
  });
});
