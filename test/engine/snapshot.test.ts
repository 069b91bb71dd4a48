// Snapshot/restore of the window engine, for exactly-once recovery: an engine restored from a snapshot
// taken at any trigger boundary (and passed through JSON, as the store keeps it) goes on exactly as the
// uninterrupted one: same ingest() answers, same collect() rows, same stats(). Property-based: fast-check
// prints the seed and the shrunk counterexample on failure.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CoinstreamError } from '../../src/core/errors.js';
import { seededRandom } from '../../src/core/random.js';
import type { Trade } from '../../src/core/trade.js';
import type { EngineConfig, EngineSnapshot } from '../../src/engine/contract.js';
import { sealedThrough, WindowEngine } from '../../src/engine/window-engine.js';
import { MIN, SEC, config, trade } from './helpers.js';

const T0 = 1_600_000_000_000;
const ASSETS = ['bitcoin', 'ethereum', 'solana'];

/** Through JSON text, as a database column keeps it. */
function viaJson(s: EngineSnapshot): EngineSnapshot {
  return JSON.parse(JSON.stringify(s)) as EngineSnapshot;
}

/**
 * A trade stream: event time advances by whole seconds (0 often, so equal event times are common and
 * open/close ties are decided by arrival order), most trades a little out of order, a few far back
 * (late), now and then a gap long enough for eviction and empty windows.
 */
const tradeStream = fc
  .array(
    fc.record({
      advance: fc.oneof({ weight: 20, arbitrary: fc.integer({ min: 0, max: 4 }) }, { weight: 1, arbitrary: fc.integer({ min: 60, max: 900 }) }),
      back: fc.oneof({ weight: 15, arbitrary: fc.integer({ min: 0, max: 180 }) }, { weight: 1, arbitrary: fc.integer({ min: 180, max: 1500 }) }),
      asset: fc.integer({ min: 0, max: ASSETS.length - 1 }),
      price: fc.oneof(fc.constantFrom(100, 100.5, 101), fc.double({ min: 0.01, max: 1e5, noNaN: true })),
      volume: fc.oneof(fc.constantFrom(1, 0.1, 2.5), fc.double({ min: 1e-8, max: 1e3, noNaN: true })),
      buy: fc.boolean(),
      // Now and then the asset and event time of one of the previous 20 trades: an exact tie.
      copy: fc.option(fc.integer({ min: 1, max: 20 }), { freq: 6 }),
    }),
    { maxLength: 400, size: 'max' },
  )
  .map((items) => {
    let t = T0;
    const out: Trade[] = [];
    for (const x of items) {
      t += x.advance * SEC;
      const tie = x.copy === null ? undefined : out[out.length - x.copy];
      const base = tie ? tie.base : ASSETS[x.asset];
      out.push(trade(tie ? tie.timestamp : t - x.back * SEC, x.price, x.volume, { base, direction: x.buy ? 'buy' : 'sell' }));
    }
    return out;
  });

/** A run: trades, the trade counts after which a trigger fires, and the trigger at which B is restored. */
const scenario = tradeStream.chain((trades) =>
  fc.record({
    trades: fc.constant(trades),
    // Trigger after this many trades; n + 1 stands for "after finish()".
    triggers: fc.uniqueArray(fc.integer({ min: 0, max: trades.length }), { maxLength: 40 }),
    restoreAt: fc.integer({ min: 0, max: trades.length + 1 }),
    otherTrigger: fc.boolean(),
    // Trades offered after finish(): all late.
    after: fc.array(fc.integer({ min: -10, max: 10 }), { maxLength: 3 }),
  }),
);

type Step = { ingest: boolean } | { collect: ReturnType<WindowEngine['collect']>; stats: ReturnType<WindowEngine['stats']> };

/** How much of the state the restores saw, so a generator that stops reaching it is noticed. */
type Coverage = { restores: number; withWindows: number; withEvicted: number; withLate: number; withFinal: number; tiesAcross: number };

/**
 * Runs the scenario; with `restoreAt`, the engine is replaced at that trigger by one restored from its
 * snapshot. Returns everything the engine said.
 */
function run(c: EngineConfig, s: { trades: Trade[]; triggers: number[]; restoreAt: number; otherTrigger: boolean; after: number[] }, coverage?: Coverage): Step[] {
  let engine = new WindowEngine(c);
  const log: Step[] = [];
  const n = s.trades.length;
  const triggers = new Set(s.triggers);
  triggers.add(s.restoreAt);
  const trigger = (point: number) => {
    const now = T0 + point * 7;
    log.push({ collect: engine.collect(now), stats: engine.stats() });
    if (coverage && point === s.restoreAt) {
      const snap = engine.snapshot();
      const stored = viaJson(snap);
      coverage.restores++;
      if (snap.assets.some((a) => a.windows.length > 0)) coverage.withWindows++;
      if (snap.assets.some((a) => a.evicted !== null)) coverage.withEvicted++;
      if (snap.assets.some((a) => a.windows.some((w) => w.final)) && snap.assets.some((a) => a.windows.some((w) => !w.final))) coverage.withFinal++;
      if (snap.lateCount > 0) coverage.withLate++;
      // Trades of one asset at one event time on both sides of the restore: open/close ties across it.
      const before = new Set(s.trades.slice(0, point).map((t) => `${t.base}@${t.timestamp}`));
      if (s.trades.slice(point).some((t) => before.has(`${t.base}@${t.timestamp}`))) coverage.tiesAcross++;
      expect(stored).toStrictEqual(snap);
      engine = WindowEngine.restore(s.otherTrigger ? { ...c, triggerMs: 7 * SEC } : c, stored);
      // The restored engine holds exactly the state it was given.
      expect(engine.snapshot().assets).toStrictEqual(snap.assets);
      expect(engine.stats()).toStrictEqual((log[log.length - 1] as { stats: unknown }).stats);
    }
  };
  for (let i = 0; i <= n; i++) {
    if (triggers.has(i)) trigger(i);
    if (i < n) log.push({ ingest: engine.ingest(s.trades[i]) });
  }
  engine.finish();
  trigger(n + 1);
  const last = n > 0 ? s.trades[n - 1].timestamp : T0;
  for (const d of s.after) log.push({ ingest: engine.ingest(trade(last + d * SEC, 1)) });
  trigger(n + 2);
  return log;
}

describe.each([
  ['tumbling 1m', config()],
  ['sliding 1m / 20s', config({ slideMs: 20 * SEC })],
  ['2m window, 30s slide, 1m watermark, 4m span', config({ windowMs: 2 * MIN, slideMs: 30 * SEC, watermarkMs: MIN, trendSpanMs: 4 * MIN })],
  ['sliding 1m / 30s, offset 10s, 2m watermark', config({ slideMs: 30 * SEC, offsetMs: 10 * SEC, watermarkMs: 2 * MIN })],
])('restore at a random trigger boundary goes on exactly as an uninterrupted engine: %s', (_name, c) => {
  it('same ingest() answers, collect() rows and stats()', () => {
    const coverage: Coverage = { restores: 0, withWindows: 0, withEvicted: 0, withLate: 0, withFinal: 0, tiesAcross: 0 };
    fc.assert(
      fc.property(scenario, (s) => {
        const a = run(c, s);
        const b = run(c, s, coverage);
        expect(b).toStrictEqual(a);
      }),
      { numRuns: 150 },
    );
    // The restores saw open and final windows, eviction, late trades and event-time ties (counts include shrinking runs).
    console.log(`${_name}: restore coverage ${JSON.stringify(coverage)}`);
    for (const n of [coverage.withWindows, coverage.withEvicted, coverage.withFinal, coverage.withLate, coverage.tiesAcross]) {
      expect(n, JSON.stringify(coverage)).toBeGreaterThan(10);
    }
  });
});

describe('snapshot at the ends of the watermark', () => {
  const c = config({ slideMs: 30 * SEC });
  const input = [trade(T0 + 5 * SEC, 100), trade(T0 + 5 * SEC, 101, 2), trade(T0 + 70 * SEC, 99), trade(T0 + 10 * MIN, 98)];

  it('before any trade (watermark -Infinity)', () => {
    const a = new WindowEngine(c);
    const snap = viaJson(a.snapshot());
    expect(snap.watermark).toBe('-Infinity');
    expect(snap.assets).toEqual([]);
    const b = WindowEngine.restore(c, snap);
    expect(b.watermark).toBe(-Infinity);
    for (const t of input) expect(b.ingest(t)).toBe(a.ingest(t));
    expect(b.collect(1)).toStrictEqual(a.collect(1));
    a.finish();
    b.finish();
    expect(b.collect(2)).toStrictEqual(a.collect(2));
    expect(b.stats()).toStrictEqual(a.stats());
  });

  it('after finish() (watermark +Infinity)', () => {
    const a = new WindowEngine(c);
    for (const t of input) a.ingest(t);
    a.collect(1);
    a.finish();
    a.collect(2);
    const snap = viaJson(a.snapshot());
    expect([snap.watermark, snap.nextFinalEnd, snap.finalizedThrough]).toEqual(['Infinity', 'Infinity', 'Infinity']);
    const b = WindowEngine.restore(c, snap);
    expect(b.watermark).toBe(Infinity);
    expect(b.stats()).toStrictEqual(a.stats());
    expect(b.ingest(trade(T0 + 20 * MIN, 1))).toBe(false);
    expect(a.ingest(trade(T0 + 20 * MIN, 1))).toBe(false);
    expect(b.collect(3)).toStrictEqual(a.collect(3));
    expect(b.stats()).toStrictEqual(a.stats());
  });

  it.each([
    ['tumbling', config()],
    ['sliding (1m every 30s)', c],
  ])('a finished job that reads on (%s): what the end of input wrote final stays final', (_name, cfg) => {
    const key = (w: { asset: string; windowStart: number; windowEnd: number }) => `${w.asset} ${w.windowStart} ${w.windowEnd}`;
    const a = new WindowEngine(cfg);
    for (const t of input) a.ingest(t);
    a.collect(1);
    // What the pipeline stores with a finished job: the state before finish(); then finish() writes every window final.
    const beforeFinish = viaJson(a.snapshot());
    a.finish();
    const finals = a.collect(2).windows;
    expect(finals.every((w) => w.isFinal)).toBe(true);
    const written = new Map(finals.map((w) => [key(w), w]));
    const lastFinal = finals.filter((w) => w.asset === 'bitcoin').sort((x, y) => x.windowEnd - y.windowEnd).at(-1)!;

    const b = WindowEngine.restore(cfg, beforeFinish);
    b.sealFinished();
    expect(b.collect(3).windows).toEqual([]); // the finals are in the stores already: not handed out again
    // A trade at the newest event time falls only in windows written final: late (before, it changed them).
    expect(b.ingest(trade(T0 + 10 * MIN, 500))).toBe(false);
    // Later windows take trades, and their trend goes on from the last final window.
    expect(b.ingest(trade(T0 + 13 * MIN, 97))).toBe(true);
    b.finish();
    const after = b.collect(4);
    expect(after.windows.length).toBeGreaterThan(0);
    expect(after.windows.filter((w) => written.has(key(w)))).toEqual([]);
    expect(after.trends.filter((t) => written.has(key(t)))).toEqual([]);
    const next = after.trends.filter((t) => t.windowStart >= lastFinal.windowEnd).sort((x, y) => x.windowStart - y.windowStart)[0];
    expect(next.prevVwap).toBe(lastFinal.vwap);
    expect(b.stats().late).toBe(a.stats().late + 1);
  });

  it.each([
    ['tumbling', config()],
    ['sliding (1m every 30s)', c],
  ])('a finished job continued again and again (%s): each seal ends at the window of the latest trade, no further', (_name, cfg) => {
    const a = new WindowEngine(cfg);
    for (const t of input) a.ingest(t);
    a.collect(1);
    const end = sealedThrough(cfg, Math.max(...input.map((t) => t.timestamp)));
    let state = viaJson(a.snapshot());
    // Three continuations that read nothing new (a file whose last line stays unfinished, say): before,
    // each pushed the watermark another window plus the delay on (00:01, then 00:07, ... 00:20).
    for (let round = 0; round < 3; round++) {
      const e = WindowEngine.restore(cfg, state);
      e.sealFinished();
      e.collect(2 + round);
      expect(e.watermark, `continuation ${round + 1}`).toBe(end);
      state = viaJson(e.snapshot());
    }
    // A trade just after the sealed windows is taken (before, it was late).
    const e = WindowEngine.restore(cfg, state);
    e.sealFinished();
    expect(e.ingest(trade(end + 1000, 100))).toBe(true);
  });

  it('carries NaN, -0 and infinities in results through JSON', () => {
    // Zero volume gives a NaN VWAP; the snapshot must keep it (JSON alone would turn it into null).
    const a = new WindowEngine(config());
    a.ingest(trade(T0, 100, 0));
    a.ingest(trade(T0 + MIN, 100, 1));
    a.collect(1);
    const snap = a.snapshot();
    const stored = viaJson(snap);
    expect(stored).toStrictEqual(snap);
    expect(JSON.stringify(stored)).toContain('"NaN"');
    const b = WindowEngine.restore(config(), stored);
    expect(b.snapshot()).toStrictEqual(snap);
    a.ingest(trade(T0 + 10 * MIN, 100, 1));
    b.ingest(trade(T0 + 10 * MIN, 100, 1));
    expect(b.collect(2)).toStrictEqual(a.collect(2));
  });
});

describe('restore refuses what would change results', () => {
  function stored(): EngineSnapshot {
    const e = new WindowEngine(config());
    e.ingest(trade(T0, 100));
    e.collect(1);
    return viaJson(e.snapshot());
  }

  it.each([
    [{ windowMs: 5 * MIN }, 'the stored job used --window 1m, this run asks for --window 5m'],
    [{ slideMs: 30 * SEC }, 'the stored job used --slide 1m, this run asks for --slide 30s'],
    [{ offsetMs: 15 * SEC }, 'the stored job used --window-offset 0, this run asks for --window-offset 15s'],
    [{ watermarkMs: 90 * SEC }, 'the stored job used --watermark 5m, this run asks for --watermark 90s'],
    [{ trendSpanMs: 10 * MIN }, 'the stored job used --trend-span 6m, this run asks for --trend-span 10m'],
  ])('a different setting %o', (over, message) => {
    const err = (() => {
      try {
        WindowEngine.restore(config(over), stored());
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(CoinstreamError);
    expect((err as CoinstreamError).code).toBe('CONFIG');
    expect((err as CoinstreamError).message).toContain(message);
  });

  it('names every setting that differs', () => {
    expect(() => WindowEngine.restore(config({ windowMs: 2 * MIN, slideMs: 30 * SEC }), stored())).toThrow(
      'the stored job used --window 1m --slide 1m, this run asks for --window 2m --slide 30s; run with the stored settings, or start over with --fresh',
    );
  });

  it('accepts a different --trigger: it changes when rows are written, not what they hold', () => {
    const e = WindowEngine.restore(config({ triggerMs: 5 * SEC }), stored());
    expect(e.config.triggerMs).toBe(5 * SEC);
    expect(e.stats().accepted).toBe(1);
  });

  it('refuses an unknown version', () => {
    const s = { ...stored(), version: 2 } as unknown as EngineSnapshot;
    expect(() => WindowEngine.restore(config(), s)).toThrow(expect.objectContaining({ code: 'CONFIG', message: expect.stringContaining('version 2') }));
  });

  it('refuses a damaged snapshot, naming the field', () => {
    const s = stored();
    (s.assets[0].panes[0] as unknown[])[2] = null;
    expect(() => WindowEngine.restore(config(), s)).toThrow(expect.objectContaining({ code: 'CONFIG', message: expect.stringContaining('assets[0].panes[0][2] (volume)') }));
  });
});

describe('snapshot() is taken at a trigger boundary only', () => {
  it('throws with uncollected trades', () => {
    const e = new WindowEngine(config());
    e.ingest(trade(T0, 100));
    expect(() => e.snapshot()).toThrow(/after collect\(\)/);
    e.collect(1);
    expect(() => e.snapshot()).not.toThrow();
  });

  it('throws with final rows not yet collected', () => {
    const e = new WindowEngine(config());
    e.ingest(trade(T0, 100));
    e.collect(1);
    e.finish();
    expect(() => e.snapshot()).toThrow(/after collect\(\)/);
  });

  it('throws a plain Error (a bug in the caller), not a CoinstreamError', () => {
    const e = new WindowEngine(config());
    e.ingest(trade(T0, 100));
    expect(() => e.snapshot()).toThrow(expect.not.objectContaining({ code: expect.anything() }));
  });
});

describe('snapshot size', () => {
  it('stays bounded: 24 hours of 3 assets at 1 trade/s, default config', () => {
    const r = seededRandom(7);
    const e = new WindowEngine(config());
    let max = 0;
    let at2h = 0;
    for (let s = 0; s < 24 * 3600; s++) {
      for (const asset of ASSETS) {
        // Up to 4 minutes out of order; full-precision prices and volumes (the longest JSON numbers).
        const t = T0 + s * SEC - Math.floor(r() * 4 * MIN);
        e.ingest(trade(t, 100 + r() * 10, r() * 3, { base: asset, direction: r() < 0.5 ? 'buy' : 'sell' }));
      }
      e.collect(T0 + s * SEC);
      if (s % 600 === 599) {
        const bytes = JSON.stringify(e.snapshot()).length;
        max = Math.max(max, bytes);
        if (s === 2 * 3600 - 1) at2h = bytes;
      }
    }
    const perAsset = max / ASSETS.length;
    console.log(`snapshot: ${max} bytes for 3 assets after 24 h (${Math.round(perAsset)} bytes per asset; ${at2h} bytes at 2 h)`);
    expect(e.stats().accepted).toBeGreaterThan(24 * 3600 * 3 * 0.95);
    expect(perAsset).toBeLessThan(9000);
    // Bounded: no growth with the length of the run.
    expect(max).toBeLessThan(at2h * 1.1);
  });
});
