// coinstream_trade_to_store_seconds: per sink, from a trade's arrival to the commit of its batch in that
// sink. In virtual time, so every latency is known exactly: the trigger comes 1 s after the trades
// arrive, and the second sink commits 300 ms after the first.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import type { Trade } from '../../src/core/trade.js';
import { DEFAULT_ENGINE_CONFIG } from '../../src/engine/contract.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import type { OutputBatch, Sink } from '../../src/sinks/contract.js';
import type { Source, SourceEvent } from '../../src/sources/contract.js';

const T0 = 1_561_939_200_000;
const trade = (offset: number): Trade => ({ exchange: 'x', base: 'bitcoin', quote: 'q', direction: 'buy', price: 100, volume: 1, timestamp: T0 + offset, priceUsd: 100 });

/** A sink that takes `ms` of virtual time to commit, and says when it has a batch. */
class TimedSink implements Sink {
  private got: (() => void) | null = null;
  readonly batch = new Promise<void>((r) => (this.got = r));
  constructor(readonly name: string, private readonly clock: ManualClock, private readonly ms: number) {}
  async open(): Promise<void> {}
  async write(_b: OutputBatch): Promise<void> {
    this.clock.advance(this.ms);
    this.got?.();
  }
  async close(): Promise<void> {}
}

describe('coinstream_trade_to_store_seconds', () => {
  it('is observed per sink, from each trade\'s arrival (its own receivedAt, else its event\'s) to that sink\'s commit', async () => {
    const clock = new ManualClock(1_000_000);
    const fast = new TimedSink('fast', clock, 0);
    const slow = new TimedSink('slow', clock, 300);
    // Two trades arrive now; one carries a receive time 500 ms earlier (a recorded one).
    const events: SourceEvent[] = [{ kind: 'trades', source: 's', trades: [trade(1000), { ...trade(2000), receivedAt: 999_500 }], receivedAt: 1_000_000 }];
    const source: Source = {
      name: 's',
      bounded: false,
      async *events(signal: AbortSignal) {
        yield* events;
        await new Promise<void>((r) => signal.addEventListener('abort', () => r()));
      },
    };
    const metrics = new Metrics();
    const stop = new AbortController();
    const run = new Pipeline({ sources: [source], sinks: [fast, slow], engine: DEFAULT_ENGINE_CONFIG, clock, logger: silentLogger, signal: stop.signal, observers: [metrics.observer] }).run();
    // Let the pipeline take the event in before the trigger is due.
    await new Promise((r) => setImmediate(r));
    clock.advance(1000);
    await slow.batch;
    stop.abort();
    await run;

    const metric = await metrics.registry.getSingleMetric('coinstream_trade_to_store_seconds')!.get();
    const value = (sink: string, name: string) => metric.values.find((v) => v.labels.sink === sink && (v as { metricName?: string }).metricName === `coinstream_trade_to_store_seconds_${name}`)?.value;
    // fast commits at 1,001,000: 1.0 s and 1.5 s; slow at 1,001,300: 1.3 s and 1.8 s.
    expect(value('fast', 'count')).toBe(2);
    expect(value('fast', 'sum')).toBeCloseTo(2.5, 9);
    expect(value('slow', 'count')).toBe(2);
    expect(value('slow', 'sum')).toBeCloseTo(3.1, 9);
    // And the buckets: slow has nothing at or below 1.25 s.
    expect(metric.values.find((v) => v.labels.sink === 'slow' && v.labels.le === 1.25)?.value).toBe(0);
    expect(metric.values.find((v) => v.labels.sink === 'fast' && v.labels.le === 1)?.value).toBe(1);
  });
});

describe('series from the start', () => {
  it('rejections by every reason, and a feed\'s gaps and reconnects from its first connection, read 0 before any event', async () => {
    const m = new Metrics();
    const before = await m.text();
    for (const reason of ['malformed', 'invalid', 'late', 'duplicate']) expect(before).toContain(`coinstream_rejected_total{reason="${reason}"} 0`);
    expect(before).not.toMatch(/coinstream_gaps_total\{/);
    m.observer.event?.({ kind: 'connected', source: 'binance', url: 'ws://127.0.0.1:1', at: 0 });
    const after = await m.text();
    expect(after).toContain('coinstream_gaps_total{source="binance"} 0');
    expect(after).toContain('coinstream_reconnects_total{source="binance"} 0');
  });
});
