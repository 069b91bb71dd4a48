// The engine in virtual time: no clock at all, only event times and explicit collect() calls.
import { describe, expect, it } from 'vitest';
import { WindowEngine } from '../../src/engine/window-engine.js';
import type { TrendResult, WindowResult } from '../../src/engine/contract.js';
import { MIN, SEC, config, trade } from './helpers.js';

function finalRows(engine: WindowEngine): { windows: WindowResult[]; trends: TrendResult[] } {
  engine.finish();
  const out = engine.collect(0);
  return { windows: out.windows.filter((w) => w.isFinal), trends: out.trends.filter((t) => t.isFinal) };
}

describe('window assignment', () => {
  it('puts a trade exactly on a boundary in the window that starts there ([start, end))', () => {
    const e = new WindowEngine(config());
    e.ingest(trade(MIN - 1, 100));
    e.ingest(trade(MIN, 200));
    const { windows } = finalRows(e);
    expect(windows.map((w) => [w.windowStart, w.windowEnd, w.trades, w.close])).toEqual([
      [0, MIN, 1, 100],
      [MIN, 2 * MIN, 1, 200],
    ]);
  });

  it('puts a trade in every sliding window that contains it', () => {
    const e = new WindowEngine(config({ windowMs: MIN, slideMs: 30 * SEC }));
    e.ingest(trade(45 * SEC, 10));
    const { windows } = finalRows(e);
    expect(windows.map((w) => [w.windowStart, w.windowEnd])).toEqual([
      [0, MIN],
      [30 * SEC, 90 * SEC],
    ]);
  });

  it('honours a window offset', () => {
    const e = new WindowEngine(config({ offsetMs: 15 * SEC }));
    e.ingest(trade(10 * SEC, 1));
    e.ingest(trade(20 * SEC, 1));
    const { windows } = finalRows(e);
    expect(windows.map((w) => w.windowStart)).toEqual([-45 * SEC, 15 * SEC]);
  });

  it('creates no row for a window without trades', () => {
    const e = new WindowEngine(config());
    e.ingest(trade(10 * SEC, 100));
    e.ingest(trade(3 * MIN + 10 * SEC, 110));
    const { windows, trends } = finalRows(e);
    expect(windows.map((w) => w.windowStart)).toEqual([0, 3 * MIN]);
    // The empty minutes are skipped: the previous non-empty window is minute 0.
    expect(trends[1].prevVwap).toBe(100);
    expect(trends[1].windows6m).toBe(2);
  });
});

describe('aggregates', () => {
  it('computes volume, amount, average, vwap, OHLC and buy/sell volume', () => {
    const e = new WindowEngine(config());
    e.ingest(trade(1 * SEC, 100, 2, { direction: 'buy' }));
    e.ingest(trade(5 * SEC, 130, 1, { direction: 'sell' }));
    e.ingest(trade(3 * SEC, 90, 1, { direction: 'buy' }));
    const [w] = finalRows(e).windows;
    expect(w.trades).toBe(3);
    expect(w.totalVolume).toBe(4);
    expect(w.totalAmount).toBe(200 + 130 + 90);
    expect(w.averagePrice).toBeCloseTo((100 + 130 + 90) / 3, 12);
    expect(w.vwap).toBeCloseTo(420 / 4, 12);
    expect([w.open, w.high, w.low, w.close]).toEqual([100, 130, 90, 130]);
    expect([w.buyVolume, w.sellVolume]).toEqual([3, 1]);
  });

  it('breaks open/close ties by arrival order', () => {
    const e = new WindowEngine(config());
    e.ingest(trade(2 * SEC, 50)); // latest time, arrives first
    e.ingest(trade(1 * SEC, 10)); // earliest time, arrives first among the earliest: the open
    e.ingest(trade(1 * SEC, 11));
    e.ingest(trade(2 * SEC, 51)); // latest time, arrives last: the close
    const [w] = finalRows(e).windows;
    expect(w.open).toBe(10);
    expect(w.close).toBe(51);
  });

  it('breaks ties by arrival order across panes of a sliding window', () => {
    const e = new WindowEngine(config({ windowMs: MIN, slideMs: 20 * SEC }));
    e.ingest(trade(25 * SEC, 7));
    e.ingest(trade(25 * SEC, 8));
    e.ingest(trade(45 * SEC, 9));
    e.ingest(trade(45 * SEC, 6));
    const w = finalRows(e).windows.find((x) => x.windowStart === 0)!;
    expect([w.open, w.close, w.high, w.low]).toEqual([7, 6, 9, 6]);
  });
});

describe('watermark and late trades', () => {
  it('accepts trades until every window they belong to is final, then rejects them as late', () => {
    const e = new WindowEngine(config({ watermarkMs: 5 * MIN }));
    expect(e.ingest(trade(10 * MIN, 100))).toBe(true);
    expect(e.watermark).toBe(5 * MIN);
    expect(e.ingest(trade(3 * MIN, 100))).toBe(false); // [3m, 4m) ended before the watermark
    expect(e.ingest(trade(5 * MIN - 1, 100))).toBe(false); // [4m, 5m): end == watermark is final
    expect(e.ingest(trade(5 * MIN, 100))).toBe(true); // [5m, 6m) is still open
    expect(e.stats().late).toBe(2);
  });

  it('does not change a final window when a sliding window of the same trade is still open', () => {
    const e = new WindowEngine(config({ windowMs: MIN, slideMs: 30 * SEC, watermarkMs: 0 }));
    e.ingest(trade(40 * SEC, 10));
    e.ingest(trade(60 * SEC, 20)); // watermark 60s: [0, 60s) is final
    expect(e.ingest(trade(50 * SEC, 1000))).toBe(true); // still belongs to the open [30s, 90s)
    const { windows } = finalRows(e);
    const first = windows.find((w) => w.windowStart === 0)!;
    const second = windows.find((w) => w.windowStart === 30 * SEC)!;
    expect(first.trades).toBe(1);
    expect(first.high).toBe(10);
    expect(second.trades).toBe(3);
    expect(second.high).toBe(1000);
  });

  it('emits a window as final exactly once, when the watermark passes its end', () => {
    const e = new WindowEngine(config({ watermarkMs: MIN }));
    e.ingest(trade(10 * SEC, 100));
    let out = e.collect(1);
    expect(out.windows.map((w) => [w.windowStart, w.isFinal])).toEqual([[0, false]]);
    expect(e.collect(2).windows).toEqual([]); // nothing changed: update mode writes nothing
    e.ingest(trade(2 * MIN, 101)); // watermark = 1m: window 0 is final
    out = e.collect(3);
    expect(out.windows.map((w) => [w.windowStart, w.isFinal]).sort()).toEqual([
      [0, true],
      [2 * MIN, false],
    ]);
    e.ingest(trade(2 * MIN + 5 * SEC, 102));
    out = e.collect(4);
    expect(out.windows.map((w) => [w.windowStart, w.isFinal])).toEqual([[2 * MIN, false]]);
    expect(out.windows[0].updatedAt).toBe(4);
  });

  it('finish() makes every window final (a bounded source ran out)', () => {
    const e = new WindowEngine(config());
    e.ingest(trade(10 * SEC, 1));
    e.ingest(trade(90 * SEC, 1));
    e.finish();
    const out = e.collect(0);
    expect(out.watermark).toBe(Infinity);
    expect(out.windows.every((w) => w.isFinal)).toBe(true);
    expect(out.windows).toHaveLength(2);
  });

  it('keeps state bounded: old panes and windows are evicted', () => {
    const e = new WindowEngine(config({ windowMs: MIN, slideMs: 10 * SEC }));
    for (let t = 0; t < 6 * 60 * MIN; t += 5 * SEC) {
      e.ingest(trade(t, 100 + (t % 7)));
      if (t % MIN === 0) e.collect(t);
    }
    const s = e.stats();
    // Watermark 5m + span 6m + one window of margin at 10 s panes: about 80 panes, whatever the input length.
    expect(s.panes).toBeLessThan(100);
    expect(s.windows).toBeLessThan(100);
    expect(s.accepted).toBe(6 * 60 * 12);
  });
});

describe('price trend', () => {
  function trends(prices: [number, number][], over = {}): TrendResult[] {
    const e = new WindowEngine(config(over));
    for (const [t, p] of prices) e.ingest(trade(t, p));
    return finalRows(e).trends;
  }

  it('is NULL without a previous window, then up, down and flat', () => {
    const t = trends([
      [10 * SEC, 100],
      [MIN + 10 * SEC, 110],
      [2 * MIN + 10 * SEC, 105],
      [3 * MIN + 10 * SEC, 105],
    ]);
    expect(t.map((r) => [r.prevVwap, r.trend])).toEqual([
      [null, null],
      [100, 'up'],
      [110, 'down'],
      [105, 'flat'],
    ]);
  });

  it('calls equal prices flat even when the sums differ in the last bits', () => {
    // 0.1 * 3 / 3 is not exactly 0.1 in floating point; the trend must still be flat.
    const e = new WindowEngine(config());
    e.ingest(trade(1 * SEC, 0.1, 1));
    e.ingest(trade(MIN + SEC, 0.1, 1));
    e.ingest(trade(MIN + 2 * SEC, 0.1, 2));
    const t = finalRows(e).trends;
    expect(t[1].trend).toBe('flat');
  });

  it('covers the 6-minute span across gaps: avg, change and window count', () => {
    const t = trends([
      [10 * SEC, 100], // window 0: outside the span of window 7
      [2 * MIN + 10 * SEC, 200], // window 2: the earliest in [2m, 8m)
      [7 * MIN + 10 * SEC, 300], // window 7
    ]);
    const last = t[2];
    expect(last.windowStart).toBe(7 * MIN);
    expect(last.windows6m).toBe(2);
    expect(last.avgPrice6m).toBeCloseTo((200 + 300) / 2, 12);
    expect(last.change6mPct).toBeCloseTo(((300 - 200) / 200) * 100, 12);
    expect(last.prevVwap).toBe(200);
    // Window 2's span [-4m, 2m) holds windows 0 and 2.
    expect(t[1].windows6m).toBe(2);
    expect(t[1].change6mPct).toBeCloseTo(100, 12);
  });

  it('weights avg_price_6m by volume and honours --trend-span', () => {
    const t = trends(
      [
        [10 * SEC, 100],
        [MIN + 10 * SEC, 200],
        [MIN + 20 * SEC, 200],
        [2 * MIN + 10 * SEC, 400],
      ],
      { trendSpanMs: 2 * MIN },
    );
    const last = t[2];
    expect(last.windows6m).toBe(2);
    expect(last.avgPrice6m).toBeCloseTo((200 + 200 + 400) / 3, 12);
  });

  it('recomputes later open trends when an earlier window gains a trade', () => {
    const e = new WindowEngine(config({ watermarkMs: 10 * MIN }));
    e.ingest(trade(10 * SEC, 100));
    e.ingest(trade(2 * MIN + 10 * SEC, 200));
    e.collect(0);
    e.ingest(trade(MIN + 10 * SEC, 300)); // a new window between the two
    const out = e.collect(1);
    const t2 = out.trends.find((t) => t.windowStart === 2 * MIN)!;
    expect(t2.prevVwap).toBe(300);
    expect(t2.trend).toBe('down');
    expect(t2.windows6m).toBe(3);
  });
});

describe('config validation', () => {
  it.each([
    [{ slideMs: 2 * MIN }, /--slide/],
    [{ windowMs: 0 }, /--window/],
    [{ trendSpanMs: 30 * SEC }, /--trend-span/],
    [{ windowMs: MIN, slideMs: 40 * SEC, trendSpanMs: 6 * MIN + 10 * SEC }, /multiple of 20000 ms/],
    [{ offsetMs: MIN }, /--window-offset/],
  ])('refuses %o with a message naming the flag', (over, message) => {
    expect(() => new WindowEngine(config(over))).toThrow(message);
  });
});
