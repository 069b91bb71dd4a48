// The event-time window engine: per-asset panes, a watermark, update-mode output.
//
// Semantics (DESIGN.md, "Window semantics"):
// - windows are [start, start + window), start = offset + k * slide;
// - watermark = max event time seen - delay; it moves with every accepted trade, so results do not
//   depend on when triggers happen to fire (a replay at max speed gives the same store as a slow one);
// - a window is final once its end <= watermark; at that moment its row and its trend row are frozen,
//   and a later trade never changes them;
// - a trade whose every window is final is late: the caller keeps it in rejected_trades;
// - collect() returns what changed since the previous collect (update mode), finals included once.
//
// State stays bounded: panes and windows far enough behind the watermark that no open window or trend
// span can reach them are evicted.

import { CoinstreamError } from '../core/errors.js';
import type { Trade } from '../core/trade.js';
import type { EngineConfig, EngineOutput, EngineSnapshot, TrendResult, WindowResult } from './contract.js';
import { addPane, addToPane, clearPane, gcd, newPane, type Pane } from './panes.js';
import { decodeSnapshot, encodeSnapshot, type EngineState } from './snapshot.js';

/** Two VWAPs this close (relative) are the same price: trend 'flat'. Sums taken in different orders differ in the last bits. */
const FLAT_TOLERANCE = 1e-9;

export interface WindowEntry {
  result: WindowResult;
  trend: TrendResult | null;
  final: boolean;
}

interface AssetState {
  readonly asset: string;
  readonly panes: Map<number, Pane>;
  /** The keys of `panes`, ascending: eviction takes them from the front instead of visiting every pane. */
  readonly paneStarts: number[];
  /** The pane the previous trade went to: trades arrive mostly in order, so this skips a map lookup. */
  lastPane: Pane | null;
  readonly dirtyPanes: Pane[];
  dirty: boolean;
  /** Non-empty windows still in state, by start. */
  readonly windows: Map<number, WindowEntry>;
  /**
   * The keys of `windows`, ascending: a trend row needs the window before it and the windows of its
   * span, and sorting the keys for every final window cost more than the rest of finalization.
   */
  readonly starts: number[];
  /** The newest window evicted from state, so prev_vwap survives eviction. */
  evicted: { start: number; vwap: number } | null;
}

export interface EngineStats {
  assets: number;
  panes: number;
  windows: number;
  accepted: number;
  late: number;
  watermark: number;
}

export function validateEngineConfig(c: EngineConfig): void {
  const fail = (msg: string) => {
    throw new CoinstreamError('CONFIG', msg);
  };
  for (const [name, v] of Object.entries(c)) {
    if (!Number.isFinite(v) || v < 0) fail(`${name} must be a non-negative duration, got ${v}`);
  }
  if (c.windowMs <= 0) fail('--window must be longer than 0');
  if (c.slideMs <= 0) fail('--slide must be longer than 0');
  if (c.slideMs > c.windowMs) fail(`--slide (${c.slideMs} ms) must not be longer than --window (${c.windowMs} ms); windows would leave gaps`);
  if (c.triggerMs <= 0) fail('--trigger must be longer than 0');
  if (c.offsetMs >= c.slideMs) fail(`--window-offset (${c.offsetMs} ms) must be shorter than --slide (${c.slideMs} ms)`);
  const pane = gcd(c.windowMs, c.slideMs);
  if (c.trendSpanMs < c.windowMs) fail(`--trend-span (${c.trendSpanMs} ms) must be at least --window (${c.windowMs} ms)`);
  if (c.trendSpanMs % pane !== 0) fail(`--trend-span (${c.trendSpanMs} ms) must be a multiple of ${pane} ms, the greatest common divisor of --window and --slide`);
}

export class WindowEngine {
  private readonly windowMs: number;
  private readonly slideMs: number;
  private readonly offsetMs: number;
  private readonly delayMs: number;
  private readonly spanMs: number;
  private readonly paneMs: number;

  private readonly assets = new Map<string, AssetState>();
  private lastAsset: AssetState | null = null;
  private readonly dirtyAssets: AssetState[] = [];
  private pendingFinal: WindowEntry[] = [];
  private readonly scratch = newPane(0);

  private wm = -Infinity;
  /** The next window end the watermark must reach before anything becomes final. */
  private nextFinalEnd = -Infinity;
  /** Every window ending at or before this is final (the watermark at the last finalization). */
  private finalizedThrough = -Infinity;
  private seq = 0;
  private lateCount = 0;

  constructor(readonly config: EngineConfig) {
    validateEngineConfig(config);
    this.windowMs = config.windowMs;
    this.slideMs = config.slideMs;
    this.offsetMs = config.offsetMs;
    this.delayMs = config.watermarkMs;
    this.spanMs = config.trendSpanMs;
    this.paneMs = gcd(config.windowMs, config.slideMs);
  }

  get watermark(): number {
    return this.wm;
  }

  /** Start of the last (latest-starting) window that contains time t. */
  private lastWindowStart(t: number): number {
    return Math.floor((t - this.offsetMs) / this.slideMs) * this.slideMs + this.offsetMs;
  }

  /** Smallest window end strictly after t. */
  private nextWindowEndAfter(t: number): number {
    const firstEnd = this.offsetMs + this.windowMs;
    return Math.floor((t - firstEnd) / this.slideMs + 1) * this.slideMs + firstEnd;
  }

  /**
   * Adds a trade. Returns false when it is late (every window it belongs to is already final): the
   * caller keeps it as rejected. Cheap by design: one pane update and a comparison.
   */
  ingest(trade: Trade): boolean {
    return this.ingestValues(trade.base, trade.timestamp, trade.priceUsd, trade.volume, trade.direction === 'buy');
  }

  /** ingest() for a trade given by its values (a replay's trades come as columns, not objects). */
  ingestValues(base: string, t: number, priceUsd: number, volume: number, isBuy: boolean): boolean {
    if (this.lastWindowStart(t) + this.windowMs <= this.wm) {
      this.lateCount++;
      return false;
    }
    let state = this.lastAsset;
    if (state === null || state.asset !== base) state = this.assetState(base);

    const paneStart = Math.floor((t - this.offsetMs) / this.paneMs) * this.paneMs + this.offsetMs;
    let pane = state.lastPane;
    if (pane === null || pane.start !== paneStart) {
      pane = state.panes.get(paneStart) ?? null;
      if (pane === null) {
        pane = newPane(paneStart);
        state.panes.set(paneStart, pane);
        insertSorted(state.paneStarts, paneStart);
      }
      state.lastPane = pane;
    }
    addToPane(pane, t, this.seq++, priceUsd, volume, isBuy);
    if (!pane.dirty) {
      pane.dirty = true;
      state.dirtyPanes.push(pane);
      if (!state.dirty) {
        state.dirty = true;
        this.dirtyAssets.push(state);
      }
    }

    const candidate = t - this.delayMs;
    if (candidate > this.wm) {
      this.wm = candidate;
      if (candidate >= this.nextFinalEnd) this.finalizeUpTo(candidate);
    }
    return true;
  }

  /** Ends the input (a bounded source ran out): the watermark moves to +infinity, every window becomes final. */
  finish(): void {
    this.wm = Infinity;
    this.finalizeUpTo(Infinity);
  }

  /**
   * For a finished job that reads on (its file grew, or another file came): restored from the state
   * before finish(), the engine freezes again what the end of input wrote final, without handing those
   * rows out again (the stores hold them). The watermark moves to the end of the last window that
   * holds a trade, so a trade in any window already written final is late, as in any other final
   * window; later windows fill as usual, their trends seeing the panes before them. Before, those final
   * rows took the new trades and changed.
   */
  sealFinished(): void {
    const through = this.sealPoint();
    if (through <= this.wm) return; // also: no trade yet, nothing was written final
    this.wm = through;
    this.finalizeUpTo(through);
    this.pendingFinal.length = 0;
  }

  /**
   * Where finishing this (restored, pre-finish) engine made windows final: the end of the last window
   * holding its latest trade (sealedThrough). From the trades it holds, not from the watermark: after
   * one seal the watermark is that seal's boundary, and each further continuation of a finished job
   * pushed it another window plus the watermark delay on, until new trades in new windows were late.
   */
  sealPoint(): number {
    let latest = -Infinity;
    for (const state of this.assets.values()) {
      for (const pane of state.panes.values()) if (pane.trades > 0 && pane.closeTime > latest) latest = pane.closeTime;
    }
    return sealedThrough(this.config, latest);
  }

  /** Everything that changed since the previous call: finals first, then open windows. */
  collect(now: number): EngineOutput {
    const windows: WindowResult[] = [];
    const trends: TrendResult[] = [];
    for (const entry of this.pendingFinal) {
      entry.result.updatedAt = now;
      windows.push(entry.result);
      if (entry.trend) trends.push(entry.trend);
    }
    this.pendingFinal.length = 0; // emptied in place: a field assigned again made V8 recompile finalizeUpTo (~50-80 ms of compiler time)
    for (const state of this.dirtyAssets) this.collectAsset(state, now, windows, trends);
    this.dirtyAssets.length = 0;
    return { windows, trends, watermark: this.wm };
  }

  /**
   * The engine's whole state as a plain value that JSON round-trips exactly (see EngineSnapshot), for
   * exactly-once recovery. Take it at a trigger boundary: right after collect(), when nothing is dirty
   * and no final row waits to be emitted.
   */
  snapshot(): EngineSnapshot {
    return encodeSnapshot(this.config, this.exportState());
  }

  /**
   * An engine that goes on exactly as the one `snapshot` was taken from. Throws CoinstreamError('CONFIG')
   * for an unknown snapshot version, a damaged snapshot, or a `config` that differs from the stored one
   * in a setting that changes results (everything but triggerMs).
   */
  static restore(config: EngineConfig, snapshot: EngineSnapshot): WindowEngine {
    const engine = new WindowEngine(config);
    engine.importState(decodeSnapshot(config, snapshot));
    return engine;
  }

  stats(): EngineStats {
    let panes = 0;
    let windows = 0;
    for (const s of this.assets.values()) {
      panes += s.panes.size;
      windows += s.windows.size;
    }
    return { assets: this.assets.size, panes, windows, accepted: this.seq, late: this.lateCount, watermark: this.wm };
  }

  /** The state without caches; only at a trigger boundary, where nothing is dirty and no final waits. */
  private exportState(): EngineState {
    if (this.dirtyAssets.length > 0 || this.pendingFinal.length > 0) {
      throw new Error('WindowEngine.snapshot() called with uncollected changes: call it right after collect()');
    }
    return {
      wm: this.wm,
      nextFinalEnd: this.nextFinalEnd,
      finalizedThrough: this.finalizedThrough,
      seq: this.seq,
      lateCount: this.lateCount,
      assets: [...this.assets.values()].map((s) => ({ asset: s.asset, panes: [...s.panes.values()], windows: [...s.windows.values()], evicted: s.evicted })),
    };
  }

  /** Loads exported state into a new engine; caches (lastAsset, lastPane) start empty and refill on the next trade. */
  private importState(s: EngineState): void {
    this.wm = s.wm;
    this.nextFinalEnd = s.nextFinalEnd;
    this.finalizedThrough = s.finalizedThrough;
    this.seq = s.seq;
    this.lateCount = s.lateCount;
    for (const a of s.assets) {
      const panes = new Map(a.panes.map((p) => [p.start, { ...p, dirty: false }] as const));
      const windows = new Map(a.windows.map((e) => [e.result.windowStart, e] as const));
      const starts = [...windows.keys()].sort((x, y) => x - y);
      const paneStarts = [...panes.keys()].sort((x, y) => x - y);
      this.assets.set(a.asset, { asset: a.asset, panes, paneStarts, lastPane: null, dirtyPanes: [], dirty: false, windows, starts, evicted: a.evicted });
    }
  }

  private assetState(asset: string): AssetState {
    let state = this.assets.get(asset);
    if (!state) {
      state = { asset, panes: new Map(), paneStarts: [], lastPane: null, dirtyPanes: [], dirty: false, windows: new Map(), starts: [], evicted: null };
      this.assets.set(asset, state);
    }
    this.lastAsset = state;
    return state;
  }

  /** Recomputes the open windows that dirty panes touch, and the trends that depend on them. */
  private collectAsset(state: AssetState, now: number, windows: WindowResult[], trends: TrendResult[]): void {
    state.dirty = false;
    const changed = new Set<number>();
    for (const pane of state.dirtyPanes) {
      pane.dirty = false;
      for (let s = this.lastWindowStart(pane.start); s > pane.start - this.windowMs; s -= this.slideMs) {
        if (s + this.windowMs > this.wm) changed.add(s);
      }
    }
    state.dirtyPanes.length = 0;
    if (changed.size === 0) return;

    for (const start of changed) {
      const result = this.computeWindow(state, start, false, now);
      const entry = state.windows.get(start);
      if (entry) entry.result = result;
      else putWindow(state, { result, trend: null, final: false });
      windows.push(result);
    }
    // A changed window can change the trend of every later open window (prev_vwap, the span).
    let firstChanged = Infinity;
    for (const start of changed) if (start < firstChanged) firstChanged = start;
    const { starts } = state;
    for (let i = lowerBound(starts, firstChanged); i < starts.length; i++) {
      const start = starts[i];
      const entry = state.windows.get(start)!;
      if (entry.final) continue;
      const trend = this.computeTrend(state, entry.result);
      if (changed.has(start) || !sameTrend(entry.trend, trend)) trends.push(trend);
      entry.trend = trend;
    }
  }

  /**
   * Freezes every window whose end is now <= watermark, then evicts what no open window can reach.
   * Due windows are those ending in (previous finalization, wm]: the watermark never goes back, so
   * a window is frozen exactly once, even after its entry was evicted while a pane of it remains.
   */
  private finalizeUpTo(wm: number): void {
    const since = this.finalizedThrough;
    this.finalizedThrough = wm;
    for (const state of this.assets.values()) {
      const due = this.dueStarts(state, since, wm);
      if (due.length > 0) {
        // updatedAt is set by collect(), which hands the row out. Until then it holds NaN, not 0: a
        // field that starts as a small integer and then takes a timestamp changes the objects' map,
        // and V8 threw away the compiled engine (finalizeUpTo, ingestColumns) in every run.
        for (const start of due) {
          putWindow(state, { result: this.computeWindow(state, start, true, NaN), trend: null, final: true });
        }
        // Trends in ascending order: each depends only on windows that start no later, all final now.
        for (const start of due) {
          const entry = state.windows.get(start)!;
          entry.trend = this.computeTrend(state, entry.result);
          this.pendingFinal.push(entry);
        }
      }
      this.evict(state, wm);
    }
    this.nextFinalEnd = wm === Infinity ? Infinity : this.nextWindowEndAfter(wm);
  }

  /**
   * The starts, ascending, of an asset's windows that end in (since, wm] and hold a pane. When few
   * windows end in that span (the watermark crossed one window end, as it does trade after trade),
   * each one's panes are looked up; otherwise (the first finalization, the end of input, a jump in
   * event time) each pane names the windows it belongs to. Both find the same windows.
   */
  private dueStarts(state: AssetState, since: number, wm: number): number[] {
    // Windows end at offset + window + k * slide: the first after `since` and the last at or before wm.
    const firstStart = this.nextWindowEndAfter(since) - this.windowMs;
    const lastStart = Math.floor((wm - this.offsetMs - this.windowMs) / this.slideMs) * this.slideMs + this.offsetMs;
    const lookups = ((lastStart - firstStart) / this.slideMs + 1) * (this.windowMs / this.paneMs);
    if (lookups <= state.panes.size) {
      const due: number[] = [];
      for (let s = firstStart; s <= lastStart; s += this.slideMs) {
        for (let p = s; p < s + this.windowMs; p += this.paneMs) {
          if (state.panes.has(p)) {
            due.push(s);
            break;
          }
        }
      }
      return due;
    }
    const found = new Set<number>();
    for (const pane of state.panes.values()) {
      for (let s = this.lastWindowStart(pane.start); s > pane.start - this.windowMs; s -= this.slideMs) {
        const end = s + this.windowMs;
        if (end > since && end <= wm) found.add(s);
      }
    }
    return [...found].sort((a, b) => a - b);
  }

  /**
   * Drops panes and windows that no open window and no future trend span can reach. A trade that is not
   * late has event time > watermark - window, and a future window's span starts after watermark - span;
   * one more window of margin keeps a pane from being re-created empty by a trade near the edge.
   */
  private evict(state: AssetState, wm: number): void {
    const horizon = wm - this.spanMs - this.windowMs;
    // The windows this far back are the first of `starts`; the final ones go (all of them are final:
    // they ended before wm - span).
    const { starts } = state;
    let below = 0;
    while (below < starts.length && starts[below] < horizon) below++;
    let kept = 0;
    for (let i = 0; i < below; i++) {
      const start = starts[i];
      const entry = state.windows.get(start)!;
      if (!entry.final) {
        starts[kept++] = start;
        continue;
      }
      if (!state.evicted || start > state.evicted.start) state.evicted = { start, vwap: entry.result.vwap };
      state.windows.delete(start);
    }
    if (below > kept) starts.splice(kept, below - kept);
    // A dirty pane this far back may go too: every window it belongs to is final, so collect() has
    // nothing to recompute for it. Keeping it would let state grow between triggers at replay speed.
    const { paneStarts } = state;
    let gone = 0;
    while (gone < paneStarts.length && paneStarts[gone] + this.paneMs <= horizon) {
      const start = paneStarts[gone++];
      if (state.lastPane === state.panes.get(start)) state.lastPane = null;
      state.panes.delete(start);
    }
    if (gone > 0) paneStarts.splice(0, gone);
  }

  private computeWindow(state: AssetState, start: number, isFinal: boolean, now: number): WindowResult {
    // One accumulator for every window: a window's row is built per final window and per trigger.
    const agg = this.scratch;
    clearPane(agg);
    for (let p = start; p < start + this.windowMs; p += this.paneMs) {
      const pane = state.panes.get(p);
      if (pane) addPane(agg, pane);
    }
    const result: WindowResult = {
      asset: state.asset,
      windowStart: start,
      windowEnd: start + this.windowMs,
      trades: agg.trades,
      totalVolume: agg.volume,
      totalAmount: agg.amount,
      averagePrice: agg.sumPrice / agg.trades,
      vwap: agg.amount / agg.volume,
      open: agg.openPrice,
      high: agg.high,
      low: agg.low,
      close: agg.closePrice,
      buyVolume: agg.buyVolume,
      sellVolume: agg.sellVolume,
      isFinal,
      updatedAt: NaN,
    };
    // Stored after the literal, not in it: collect() stores updatedAt again in final rows, and V8
    // treats a field as constant until its first store after creation, then throws away the code
    // compiled on that (finalizeUpTo, computeWindow: seen with --trace-generalization, ~60-90 ms of
    // compiler time). Stored here, the field is variable from the first window, before any compile.
    result.updatedAt = now;
    return result;
  }

  /** The trend row of window w, which must be in state.windows. */
  private computeTrend(state: AssetState, w: WindowResult): TrendResult {
    const spanStart = w.windowEnd - this.spanMs;
    const { starts, windows } = state;
    const at = lowerBound(starts, w.windowStart);
    // The window before w: the newest one in state that starts earlier, else the newest evicted one.
    let prevVwap: number | null = null;
    if (at > 0) prevVwap = windows.get(starts[at - 1])!.result.vwap;
    else if (state.evicted && state.evicted.start < w.windowStart) prevVwap = state.evicted.vwap;
    // The windows of the span: those that start at or after its start and end no later than w.
    const firstAt = lowerBound(starts, spanStart);
    const windowsInSpan = at - firstAt + 1;
    const firstInSpan = windows.get(starts[firstAt])!.result.vwap;
    let amount = 0;
    let volume = 0;
    for (let p = spanStart; p < w.windowEnd; p += this.paneMs) {
      const pane = state.panes.get(p);
      if (pane) {
        amount += pane.amount;
        volume += pane.volume;
      }
    }
    return {
      asset: w.asset,
      windowStart: w.windowStart,
      windowEnd: w.windowEnd,
      vwap: w.vwap,
      prevVwap,
      trend: prevVwap === null ? null : direction(w.vwap, prevVwap),
      avgPrice6m: amount / volume,
      change6mPct: ((w.vwap - firstInSpan) / firstInSpan) * 100,
      windows6m: windowsInSpan,
      isFinal: w.isFinal,
    };
  }
}

/** The first index of ascending `xs` whose value is >= x (xs.length if none). */
function lowerBound(xs: readonly number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Sets a window's entry; a new window's start joins `starts`. */
function putWindow(state: AssetState, entry: WindowEntry): void {
  const start = entry.result.windowStart;
  const isNew = !state.windows.has(start);
  state.windows.set(start, entry);
  if (isNew) insertSorted(state.starts, start);
}

/** Adds x to ascending xs, where new values mostly come last. */
function insertSorted(xs: number[], x: number): void {
  if (xs.length === 0 || xs[xs.length - 1] < x) xs.push(x);
  else xs.splice(lowerBound(xs, x), 0, x);
}

function direction(vwap: number, prev: number): 'up' | 'down' | 'flat' {
  if (Math.abs(vwap - prev) <= FLAT_TOLERANCE * Math.max(Math.abs(vwap), Math.abs(prev))) return 'flat';
  return vwap > prev ? 'up' : 'down';
}

function sameTrend(a: TrendResult | null, b: TrendResult): boolean {
  return (
    a !== null &&
    a.vwap === b.vwap &&
    a.prevVwap === b.prevVwap &&
    a.trend === b.trend &&
    a.avgPrice6m === b.avgPrice6m &&
    a.change6mPct === b.change6mPct &&
    a.windows6m === b.windows6m
  );
}

/**
 * Where a finished job's end of input made windows final, given the event time of its latest trade:
 * the end of the last window holding it. Every window ending there or before was written final; a job
 * reading on writes only later ones (WindowEngine.sealFinished, and the Delta sink, which appends
 * final rows once each). -Infinity before any trade.
 */
export function sealedThrough(config: Pick<EngineConfig, 'windowMs' | 'slideMs' | 'offsetMs'>, latestTrade: number): number {
  if (!Number.isFinite(latestTrade)) return -Infinity;
  const lastStart = Math.floor((latestTrade - config.offsetMs) / config.slideMs) * config.slideMs + config.offsetMs;
  return lastStart + config.windowMs;
}
