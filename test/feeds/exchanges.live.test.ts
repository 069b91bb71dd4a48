// Needs the real internet: run by hand with `npx vitest run --config vitest.live.config.ts`.
// Not part of `npm test` (these machines reach only package registries).
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import type { SourceEvent } from '../../src/sources/contract.js';
import { FEED_KINDS, createFeedSource } from '../../src/sources/feeds/registry.js';

describe.each(FEED_KINDS.filter((k) => k !== 'coincap' && k !== 'coincap-prices'))('%s, live', (kind) => {
  it('delivers normalised bitcoin trades within 30 s', async () => {
    const source = createFeedSource(kind, undefined, undefined, { clock: systemClock, logger: silentLogger });
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), 30_000);
    const trades: Extract<SourceEvent, { kind: 'trades' }>['trades'] = [];
    for await (const e of source.events(stop.signal)) {
      if (e.kind === 'trades') trades.push(...e.trades);
      if (trades.length >= 5) break;
    }
    clearTimeout(timer);
    stop.abort();
    expect(trades.length).toBeGreaterThanOrEqual(5);
    expect(trades.every((t) => ['bitcoin', 'ethereum'].includes(t.base) && t.priceUsd > 0 && Math.abs(t.timestamp - Date.now()) < 120_000)).toBe(true);
  }, 40_000);
});
