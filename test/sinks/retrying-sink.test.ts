// Retries wrap a sink (composition): only errors a retry can get past are retried, with capped
// backoff and a log line each, and the error that finally goes up is the original one.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { systemClock, type Clock } from '../../src/core/clock.js';
import { CoinstreamError } from '../../src/core/errors.js';
import { silentLogger, type Logger } from '../../src/core/logger.js';
import type { WindowResult } from '../../src/engine/contract.js';
import type { OutputBatch, Sink } from '../../src/sinks/contract.js';
import { DuckDBSink } from '../../src/sinks/duckdb/duckdb-sink.js';
import { DuckDBStore } from '../../src/sinks/duckdb/duckdb-store.js';
import { queryRows } from '../../src/sinks/duckdb/open.js';
import { RetryingSink } from '../../src/sinks/retrying-sink.js';
import { TradeBatchBuilder } from '../../src/sinks/trade-batch.js';

const dir = mkdtempSync(join(tmpdir(), 'coinstream-retry-'));

function batch(windows: WindowResult[] = [], batchId = 0): OutputBatch {
  return { batchId, windows, trends: [], rejected: [], prices: [], trades: new TradeBatchBuilder(2).take(), watermark: 0, final: false };
}

function window(over: Partial<WindowResult> = {}): WindowResult {
  return { asset: 'bitcoin', windowStart: 0, windowEnd: 60_000, trades: 1, totalVolume: 1, totalAmount: 100, averagePrice: 100, vwap: 100, open: 100, high: 100, low: 100, close: 100, buyVolume: 1, sellVolume: 0, isFinal: true, updatedAt: 5, ...over };
}

/** A clock whose sleeps return at once and are recorded: the backoff is asserted, not waited for. */
function recordingClock(): Clock & { slept: number[] } {
  const slept: number[] = [];
  return { ...systemClock, slept, sleep: async (ms: number) => void slept.push(ms) };
}

/** A sink that fails its first `failures` writes with `error`. */
function flaky(failures: number, error: () => Error): Sink & { attempts: number } {
  return {
    name: 'flaky', attempts: 0,
    async open() {}, async close() {},
    async write() {
      if (++this.attempts <= failures) throw error();
    },
  };
}

function capture(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { lines, logger: pino<never>({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) }) };
}

describe('RetryingSink', () => {
  it('retries a retriable failure with capped exponential backoff and a log line per retry', async () => {
    const inner = flaky(4, () => new CoinstreamError('SINK_FAILED', 'IO Error: disk hiccup', true));
    const clock = recordingClock();
    const { logger, lines } = capture();
    await new RetryingSink(inner, { clock, logger }, { attempts: 6, initialMs: 500, maxMs: 2000, factor: 2 }).write(batch([], 7));
    expect(inner.attempts).toBe(5);
    expect(clock.slept).toEqual([500, 1000, 2000, 2000]);
    expect(lines.map((l) => l.msg)).toEqual([
      'flaky: writing batch 7 failed (IO Error: disk hiccup); retrying in 0.5 s (try 2 of 6)',
      'flaky: writing batch 7 failed (IO Error: disk hiccup); retrying in 1.0 s (try 3 of 6)',
      'flaky: writing batch 7 failed (IO Error: disk hiccup); retrying in 2.0 s (try 4 of 6)',
      'flaky: writing batch 7 failed (IO Error: disk hiccup); retrying in 2.0 s (try 5 of 6)',
    ]);
  });

  it('gives up after the last try with the original error', async () => {
    const original = new CoinstreamError('SINK_FAILED', 'IO Error: gone', true);
    const inner = flaky(10, () => original);
    const clock = recordingClock();
    await expect(new RetryingSink(inner, { clock, logger: silentLogger }, { attempts: 3, initialMs: 1, maxMs: 1, factor: 2 }).write(batch())).rejects.toBe(original);
    expect(inner.attempts).toBe(3);
  });

  it('does not retry what a retry cannot fix', async () => {
    for (const error of [() => new CoinstreamError('SINK_FAILED', 'Constraint Error: NOT NULL', false), () => new TypeError('a bug')]) {
      const inner = flaky(1, error);
      const clock = recordingClock();
      await expect(new RetryingSink(inner, { clock, logger: silentLogger }).write(batch())).rejects.toThrow();
      expect(inner.attempts).toBe(1);
      expect(clock.slept).toEqual([]);
    }
  });
});

describe('DuckDB store errors', () => {
  for (const via of ['the store', 'the worker'] as const) {
    it(`say what was wrong (not "transaction is aborted"), are not retriable for bad data, and leave the store usable (through ${via})`, async () => {
      const path = join(dir, `bad-row-${via.replace(' ', '-')}.duckdb`);
      const store: Sink = via === 'the store' ? new DuckDBStore(path, silentLogger) : new DuckDBSink(path, silentLogger);
      await store.open();
      // NaN goes to the store as NULL, which trade_windows' NOT NULL refuses: a bug upstream, simulated.
      const failure = await store.write(batch([window(), window({ windowStart: 60_000, windowEnd: 120_000, vwap: NaN })])).catch((err: unknown) => err);
      expect(failure).toBeInstanceOf(CoinstreamError);
      expect((failure as CoinstreamError).message).toMatch(/writing batch 0 failed: .*NOT NULL constraint failed: trade_windows\.vwap/);
      expect((failure as CoinstreamError).message).not.toMatch(/transaction is aborted/i);
      expect((failure as CoinstreamError).retriable).toBe(false);
      // The batch was rolled back whole; the next one goes in.
      await store.write(batch([window({ windowStart: 120_000, windowEnd: 180_000 })], 1));
      await store.close();
      const rows = await queryRows(path, 'SELECT epoch_ms(window_start)::DOUBLE AS s FROM trade_windows');
      expect(rows).toEqual([{ s: 120_000 }]);
    });
  }
});
