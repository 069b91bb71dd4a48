// KafkaPartitionSource fed by hand (no broker): what --max-offsets-per-trigger counts. Virtual time
// (ManualClock): nothing sleeps.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { KafkaPartitionSource, type FetchedRecord } from '../../src/kafka/partition-source.js';
import type { SourceEvent } from '../../src/sources/contract.js';

const T0 = Date.UTC(2019, 6, 1);
const record = (offset: number): FetchedRecord => ({
  offset: String(offset),
  timestamp: String(T0 + offset),
  value: Buffer.from(JSON.stringify({ exchange: 'kraken', base: 'bitcoin', quote: 'united-states-dollar', direction: 'buy', price: 100, volume: 1, timestamp: T0 + offset, priceUsd: 100 })),
});

describe('KafkaPartitionSource', () => {
  it('resumed with --max-offsets-per-trigger: the warm-up re-read for duplicates counts against no limit', async () => {
    const clock = new ManualClock(T0);
    const source = new KafkaPartitionSource({
      topic: 't', partition: 0, deadLetter: false, clock, startOffset: 0, lowOffset: 0, endOffset: 5_000, maxPerTrigger: 100, triggerMs: 1_000,
      seek: () => undefined, pause: () => undefined,
    });
    // Resumed at offset 4,000: records from 0 (up to 10,000 back) come again, only to know duplicates.
    const events = source.events(new AbortController().signal, { offset: 4_000, line: 4_000 });
    source.push(Array.from({ length: 5_000 }, (_, i) => record(i)), 5_000);
    const first: SourceEvent[] = [];
    // Without waiting for any trigger interval, the first 100 new records come: before, the 4,000
    // warm-up records used up 40 intervals of the limit first.
    while (first.reduce((n, e) => n + (e.kind === 'trades' ? e.trades.length : 0), 0) < 100) {
      const next = await events.next();
      expect(next.done).toBe(false);
      first.push(next.value as SourceEvent);
    }
    const offsets = first.flatMap((e) => (e.kind === 'trades' ? [...e.trades].map((t) => t.timestamp - T0) : []));
    expect(offsets[0]).toBe(4_000);
    expect(offsets).toHaveLength(100);
    expect(clock.now()).toBe(T0);
    await events.return(undefined);
  });
});
