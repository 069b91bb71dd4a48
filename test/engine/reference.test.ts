// The engine against a brute-force reference written straight from the contract: every window is
// computed from the list of trades it holds, with no panes, no eviction, no incremental state.
// Random input (seeded): several assets, disorder, late trades, tumbling and sliding windows.
import { describe, expect, it } from 'vitest';
import type { Trade } from '../../src/core/trade.js';
import { WindowEngine } from '../../src/engine/window-engine.js';
import type { EngineConfig, TrendResult, WindowResult } from '../../src/engine/contract.js';
import { MIN, SEC, config, trade } from './helpers.js';
import { seededRandom } from '../../src/core/random.js';


function randomTrades(seed: number, n: number): Trade[] {
  const r = seededRandom(seed);
  const out: Trade[] = [];
  let t = 1_600_000_000_000;
  for (let i = 0; i < n; i++) {
    t += Math.floor(r() * 4 * SEC);
    // Mostly within a 4-minute disorder; now and then far back (late).
    const jitter = r() < 0.03 ? -Math.floor(r() * 20 * MIN) : -Math.floor(r() * 4 * MIN);
    const asset = ['bitcoin', 'ethereum', 'solana'][Math.floor(r() * 3)];
    out.push(trade(t + jitter, Math.round((100 + r() * 10) * 100) / 100, Math.round(r() * 1000) / 1000 + 0.001, { base: asset, direction: r() < 0.5 ? 'buy' : 'sell' }));
  }
  return out;
}

interface Expected {
  windows: Map<string, WindowResult>;
  trends: Map<string, TrendResult>;
  late: number;
}

/** The contract, literally: per-trade watermark, windows frozen once final, trends from final windows. */
function reference(trades: Trade[], c: EngineConfig): Expected {
  let wm = -Infinity;
  let late = 0;
  const members = new Map<string, { asset: string; start: number; items: { t: Trade; seq: number }[] }>();
  const accepted: { t: Trade; seq: number; wmBefore: number }[] = [];
  trades.forEach((t, seq) => {
    const lastStart = Math.floor((t.timestamp - c.offsetMs) / c.slideMs) * c.slideMs + c.offsetMs;
    if (lastStart + c.windowMs <= wm) {
      late++;
      return;
    }
    for (let s = lastStart; s > t.timestamp - c.windowMs; s -= c.slideMs) {
      if (s + c.windowMs <= wm) continue; // already final
      const key = `${t.base}|${s}`;
      if (!members.has(key)) members.set(key, { asset: t.base, start: s, items: [] });
      members.get(key)!.items.push({ t, seq });
    }
    accepted.push({ t, seq, wmBefore: wm });
    wm = Math.max(wm, t.timestamp - c.watermarkMs);
  });
  const windows = new Map<string, WindowResult>();
  for (const [key, m] of members) {
    const items = m.items;
    const vol = items.reduce((a, x) => a + x.t.volume, 0);
    const amt = items.reduce((a, x) => a + x.t.volume * x.t.priceUsd, 0);
    const byOpen = [...items].sort((a, b) => a.t.timestamp - b.t.timestamp || a.seq - b.seq);
    const byClose = [...items].sort((a, b) => b.t.timestamp - a.t.timestamp || b.seq - a.seq);
    windows.set(key, {
      asset: m.asset, windowStart: m.start, windowEnd: m.start + c.windowMs, trades: items.length, totalVolume: vol, totalAmount: amt,
      averagePrice: items.reduce((a, x) => a + x.t.priceUsd, 0) / items.length, vwap: amt / vol,
      open: byOpen[0].t.priceUsd, close: byClose[0].t.priceUsd,
      high: Math.max(...items.map((x) => x.t.priceUsd)), low: Math.min(...items.map((x) => x.t.priceUsd)),
      buyVolume: items.filter((x) => x.t.direction === 'buy').reduce((a, x) => a + x.t.volume, 0),
      sellVolume: items.filter((x) => x.t.direction === 'sell').reduce((a, x) => a + x.t.volume, 0),
      isFinal: true, updatedAt: 0,
    });
  }
  const trends = new Map<string, TrendResult>();
  for (const [key, w] of windows) {
    const same = [...windows.values()].filter((x) => x.asset === w.asset).sort((a, b) => a.windowStart - b.windowStart);
    const prev = same.filter((x) => x.windowStart < w.windowStart).pop();
    const spanStart = w.windowEnd - c.trendSpanMs;
    const inSpan = same.filter((x) => x.windowStart >= spanStart && x.windowEnd <= w.windowEnd);
    const spanTrades = accepted.filter((a) => a.t.base === w.asset && a.t.timestamp >= spanStart && a.t.timestamp < w.windowEnd && a.wmBefore < w.windowEnd);
    const sv = spanTrades.reduce((a, x) => a + x.t.volume, 0);
    const sa = spanTrades.reduce((a, x) => a + x.t.volume * x.t.priceUsd, 0);
    const rel = prev ? Math.abs(w.vwap - prev.vwap) / Math.max(w.vwap, prev.vwap) : 0;
    trends.set(key, {
      asset: w.asset, windowStart: w.windowStart, windowEnd: w.windowEnd, vwap: w.vwap, prevVwap: prev?.vwap ?? null,
      trend: !prev ? null : rel <= 1e-9 ? 'flat' : w.vwap > prev.vwap ? 'up' : 'down',
      avgPrice6m: sa / sv, change6mPct: ((w.vwap - inSpan[0].vwap) / inSpan[0].vwap) * 100, windows6m: inSpan.length, isFinal: true,
    });
  }
  return { windows, trends, late };
}

function close(actual: number | null, expected: number | null): boolean {
  if (actual === null || expected === null) return actual === expected;
  return Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected));
}

describe.each([
  ['tumbling 1m', config()],
  ['sliding 1m / 30s', config({ slideMs: 30 * SEC })],
  ['sliding 1m / 20s, watermark 2m, span 4m', config({ slideMs: 20 * SEC, watermarkMs: 2 * MIN, trendSpanMs: 4 * MIN })],
  ['tumbling 1m, no watermark delay', config({ watermarkMs: 0 })],
])('engine equals the brute-force reference: %s', (_name, c) => {
  it.each([1, 2, 3])('seed %i', (seed) => {
    const input = randomTrades(seed, 3000);
    const expected = reference(input, c);
    const engine = new WindowEngine(c);
    const got = { windows: new Map<string, WindowResult>(), trends: new Map<string, TrendResult>() };
    input.forEach((t, i) => {
      engine.ingest(t);
      // Collect at irregular points, as triggers would.
      if (i % 97 === 0) {
        const out = engine.collect(i);
        for (const w of out.windows) got.windows.set(`${w.asset}|${w.windowStart}`, w);
        for (const t2 of out.trends) got.trends.set(`${t2.asset}|${t2.windowStart}`, t2);
      }
    });
    engine.finish();
    const out = engine.collect(0);
    for (const w of out.windows) got.windows.set(`${w.asset}|${w.windowStart}`, w);
    for (const t2 of out.trends) got.trends.set(`${t2.asset}|${t2.windowStart}`, t2);

    expect(engine.stats().late).toBe(expected.late);
    expect(expected.late).toBeGreaterThan(0);
    expect([...got.windows.keys()].sort()).toEqual([...expected.windows.keys()].sort());
    expect([...got.trends.keys()].sort()).toEqual([...expected.trends.keys()].sort());
    for (const [key, e] of expected.windows) {
      const g = got.windows.get(key)!;
      expect(g.isFinal, key).toBe(true);
      for (const f of ['trades', 'totalVolume', 'totalAmount', 'averagePrice', 'vwap', 'open', 'high', 'low', 'close', 'buyVolume', 'sellVolume'] as const) {
        expect(close(g[f], e[f]), `${key} ${f}: ${g[f]} vs ${e[f]}`).toBe(true);
      }
    }
    for (const [key, e] of expected.trends) {
      const g = got.trends.get(key)!;
      expect(g.trend, key).toBe(e.trend);
      expect(g.windows6m, key).toBe(e.windows6m);
      for (const f of ['vwap', 'prevVwap', 'avgPrice6m', 'change6mPct'] as const) {
        expect(close(g[f], e[f]), `${key} ${f}: ${g[f]} vs ${e[f]}`).toBe(true);
      }
    }
  });
});
