// The window engine's state as a value, for exactly-once recovery: encodes the engine's state into an
// EngineSnapshot (a plain value that JSON round-trips exactly) and decodes it back, refusing a snapshot
// of another version or one taken with settings that would change results.
//
// The engine decides what its state is and when it may be taken (WindowEngine.snapshot/restore);
// this file only turns that state into JSON-safe data and back. Doubles survive JSON exactly (JS prints
// the shortest text that reads back to the same double); ±Infinity, NaN and -0 do not, so every number
// that might be one of them goes through enc/dec (see JsonNumber in contract.ts).

import { CoinstreamError } from '../core/errors.js';
import { formatDuration } from '../core/duration.js';
import type { AssetSnapshot, EngineConfig, EngineSnapshot, JsonNumber, PaneSnapshot, TrendDirection, WindowSnapshot } from './contract.js';
import type { Pane } from './panes.js';
import type { WindowEntry } from './window-engine.js';

export const SNAPSHOT_VERSION = 1;

/** The engine's state at a trigger boundary, in memory (no caches, nothing dirty, no pending finals). */
export interface EngineState {
  wm: number;
  nextFinalEnd: number;
  finalizedThrough: number;
  seq: number;
  lateCount: number;
  /** In the engine's order (first seen first). */
  assets: AssetStateValue[];
}

export interface AssetStateValue {
  asset: string;
  panes: Pane[];
  windows: WindowEntry[];
  evicted: { start: number; vwap: number } | null;
}

/** The settings that change results, with the flag that sets each. --trigger only changes when rows are written. */
const RESULT_SETTINGS = [
  ['windowMs', '--window'],
  ['slideMs', '--slide'],
  ['offsetMs', '--window-offset'],
  ['watermarkMs', '--watermark'],
  ['trendSpanMs', '--trend-span'],
] as const;

const CONFIG_FIELDS = ['windowMs', 'slideMs', 'offsetMs', 'watermarkMs', 'triggerMs', 'trendSpanMs'] as const;

export function encodeSnapshot(config: EngineConfig, state: EngineState): EngineSnapshot {
  const storedConfig = {} as EngineConfig;
  for (const f of CONFIG_FIELDS) storedConfig[f] = config[f];
  return {
    version: SNAPSHOT_VERSION,
    config: storedConfig,
    watermark: enc(state.wm),
    nextFinalEnd: enc(state.nextFinalEnd),
    finalizedThrough: enc(state.finalizedThrough),
    seq: state.seq,
    lateCount: state.lateCount,
    assets: state.assets.map(encodeAsset),
  };
}

/**
 * Checks `snapshot` against the config of this run and decodes it. Throws CoinstreamError('CONFIG') for
 * an unknown version, for settings that differ from the stored ones, and for a damaged snapshot.
 */
export function decodeSnapshot(config: EngineConfig, snapshot: EngineSnapshot): EngineState {
  const s = checkSnapshotSettings(config, snapshot);
  return {
    wm: dec(s.watermark, 'watermark'),
    nextFinalEnd: dec(s.nextFinalEnd, 'nextFinalEnd'),
    finalizedThrough: dec(s.finalizedThrough, 'finalizedThrough'),
    seq: count(s.seq, 'seq'),
    lateCount: count(s.lateCount, 'lateCount'),
    assets: decodeAssets(s.assets, config.windowMs),
  };
}

/**
 * The version and the result-changing settings of a stored snapshot, against this run's (CONFIG error
 * when they differ), without decoding its state: also for every store ahead of the one a job resumes
 * from, whose settings went unchecked (a store added beside a 2m-window job let a 1m run write into it).
 */
export function checkSnapshotSettings(config: EngineConfig, snapshot: EngineSnapshot): Record<string, unknown> {
  const s = snapshot as unknown as Record<string, unknown>;
  if (s === null || typeof s !== 'object') damaged('the snapshot', s);
  if (s.version !== SNAPSHOT_VERSION) {
    throw new CoinstreamError('CONFIG', `cannot resume: the stored engine state has version ${JSON.stringify(s.version)}, this build reads version ${SNAPSHOT_VERSION} only`);
  }
  checkSameSettings(object(s.config, 'config'), config);
  return s;
}

function decodeAssets(raw: unknown, windowMs: number): AssetStateValue[] {
  const seen = new Set<string>();
  return array(raw, 'assets').map((a, i) => {
    const asset = decodeAsset(a, `assets[${i}]`, windowMs);
    if (seen.has(asset.asset)) damaged(`assets[${i}].asset (a duplicate)`, asset.asset);
    seen.add(asset.asset);
    return asset;
  });
}

function checkSameSettings(stored: Record<string, unknown>, asked: EngineConfig): void {
  const was: string[] = [];
  const now: string[] = [];
  for (const [field, flag] of RESULT_SETTINGS) {
    const v = finite(stored[field], `config.${field}`);
    if (v !== asked[field]) {
      was.push(`${flag} ${formatDuration(v)}`);
      now.push(`${flag} ${formatDuration(asked[field])}`);
    }
  }
  if (was.length > 0) {
    throw new CoinstreamError('CONFIG', `cannot resume: the stored job used ${was.join(' ')}, this run asks for ${now.join(' ')}; run with the stored settings, or start over with --fresh (it clears the job's rows), or give another store`);
  }
}

// ---- encoding

function encodeAsset(a: AssetStateValue): AssetSnapshot {
  return {
    asset: a.asset,
    panes: a.panes.map(encodePane),
    windows: a.windows.map(encodeWindow),
    evicted: a.evicted && { start: a.evicted.start, vwap: enc(a.evicted.vwap) },
  };
}

function encodePane(p: Pane): PaneSnapshot {
  return [
    p.start,
    p.trades,
    enc(p.volume),
    enc(p.amount),
    enc(p.sumPrice),
    enc(p.high),
    enc(p.low),
    enc(p.buyVolume),
    enc(p.sellVolume),
    enc(p.openTime),
    p.openSeq,
    enc(p.openPrice),
    enc(p.closeTime),
    p.closeSeq,
    enc(p.closePrice),
  ];
}

function encodeWindow(e: WindowEntry): WindowSnapshot {
  const r = e.result;
  const t = e.trend;
  // What the snapshot leaves out must really follow from the rest.
  if (r.isFinal !== e.final || (t && (!Object.is(t.vwap, r.vwap) || t.isFinal !== e.final || t.windowStart !== r.windowStart))) {
    throw new Error(`window entry ${r.asset}@${r.windowStart} is inconsistent: its result, trend and final flag disagree`);
  }
  return {
    start: r.windowStart,
    final: e.final,
    result: [
      r.trades,
      enc(r.totalVolume),
      enc(r.totalAmount),
      enc(r.averagePrice),
      enc(r.vwap),
      enc(r.open),
      enc(r.high),
      enc(r.low),
      enc(r.close),
      enc(r.buyVolume),
      enc(r.sellVolume),
      enc(r.updatedAt),
    ],
    trend: t && [t.prevVwap === null ? null : enc(t.prevVwap), t.trend, enc(t.avgPrice6m), enc(t.change6mPct), t.windows6m],
  };
}

export function enc(v: number): JsonNumber {
  if (Number.isFinite(v)) return Object.is(v, -0) ? '-0' : v;
  if (Number.isNaN(v)) return 'NaN';
  return v > 0 ? 'Infinity' : '-Infinity';
}

// ---- decoding (the snapshot came from a database: check every field)

function decodeAsset(raw: unknown, path: string, windowMs: number): AssetStateValue {
  const a = object(raw, path);
  if (typeof a.asset !== 'string') damaged(`${path}.asset`, a.asset);
  const asset = a.asset;
  const paneStarts = new Set<number>();
  const panes = array(a.panes, `${path}.panes`).map((p, i) => {
    const pane = decodePane(p, `${path}.panes[${i}]`);
    if (paneStarts.has(pane.start)) damaged(`${path}.panes[${i}].start (a duplicate)`, pane.start);
    paneStarts.add(pane.start);
    return pane;
  });
  const windowStarts = new Set<number>();
  const windows = array(a.windows, `${path}.windows`).map((w, i) => {
    const entry = decodeWindow(w, `${path}.windows[${i}]`, asset, windowMs);
    if (windowStarts.has(entry.result.windowStart)) damaged(`${path}.windows[${i}].start (a duplicate)`, entry.result.windowStart);
    windowStarts.add(entry.result.windowStart);
    return entry;
  });
  let evicted: AssetStateValue['evicted'] = null;
  if (a.evicted !== null) {
    const e = object(a.evicted, `${path}.evicted`);
    evicted = { start: finite(e.start, `${path}.evicted.start`), vwap: dec(e.vwap, `${path}.evicted.vwap`) };
  }
  return { asset, panes, windows, evicted };
}

function decodePane(raw: unknown, path: string): Pane {
  const p = tuple(raw, 15, path);
  return {
    start: finite(p[0], `${path}[0] (start)`),
    trades: count(p[1], `${path}[1] (trades)`),
    volume: dec(p[2], `${path}[2] (volume)`),
    amount: dec(p[3], `${path}[3] (amount)`),
    sumPrice: dec(p[4], `${path}[4] (sumPrice)`),
    high: dec(p[5], `${path}[5] (high)`),
    low: dec(p[6], `${path}[6] (low)`),
    buyVolume: dec(p[7], `${path}[7] (buyVolume)`),
    sellVolume: dec(p[8], `${path}[8] (sellVolume)`),
    openTime: dec(p[9], `${path}[9] (openTime)`),
    openSeq: count(p[10], `${path}[10] (openSeq)`),
    openPrice: dec(p[11], `${path}[11] (openPrice)`),
    closeTime: dec(p[12], `${path}[12] (closeTime)`),
    closeSeq: count(p[13], `${path}[13] (closeSeq)`),
    closePrice: dec(p[14], `${path}[14] (closePrice)`),
    dirty: false,
  };
}

function decodeWindow(raw: unknown, path: string, asset: string, windowMs: number): WindowEntry {
  const w = object(raw, path);
  const start = finite(w.start, `${path}.start`);
  if (typeof w.final !== 'boolean') damaged(`${path}.final`, w.final);
  const isFinal = w.final;
  const r = tuple(w.result, 12, `${path}.result`);
  const result = {
    asset,
    windowStart: start,
    windowEnd: start + windowMs,
    trades: count(r[0], `${path}.result[0] (trades)`),
    totalVolume: dec(r[1], `${path}.result[1] (totalVolume)`),
    totalAmount: dec(r[2], `${path}.result[2] (totalAmount)`),
    averagePrice: dec(r[3], `${path}.result[3] (averagePrice)`),
    vwap: dec(r[4], `${path}.result[4] (vwap)`),
    open: dec(r[5], `${path}.result[5] (open)`),
    high: dec(r[6], `${path}.result[6] (high)`),
    low: dec(r[7], `${path}.result[7] (low)`),
    close: dec(r[8], `${path}.result[8] (close)`),
    buyVolume: dec(r[9], `${path}.result[9] (buyVolume)`),
    sellVolume: dec(r[10], `${path}.result[10] (sellVolume)`),
    isFinal,
    updatedAt: dec(r[11], `${path}.result[11] (updatedAt)`),
  };
  if (w.trend === null) return { result, trend: null, final: isFinal };
  const t = tuple(w.trend, 5, `${path}.trend`);
  const direction = t[1];
  if (direction !== null && direction !== 'up' && direction !== 'down' && direction !== 'flat') damaged(`${path}.trend[1] (trend)`, direction);
  const trend = {
    asset,
    windowStart: start,
    windowEnd: start + windowMs,
    vwap: result.vwap,
    prevVwap: t[0] === null ? null : dec(t[0], `${path}.trend[0] (prevVwap)`),
    trend: direction as TrendDirection | null,
    avgPrice6m: dec(t[2], `${path}.trend[2] (avgPrice6m)`),
    change6mPct: dec(t[3], `${path}.trend[3] (change6mPct)`),
    windows6m: count(t[4], `${path}.trend[4] (windows6m)`),
    isFinal,
  };
  return { result, trend, final: isFinal };
}

export function dec(v: unknown, path: string): number {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  switch (v) {
    case 'Infinity':
      return Infinity;
    case '-Infinity':
      return -Infinity;
    case 'NaN':
      return NaN;
    case '-0':
      return -0;
  }
  damaged(path, v);
}

function finite(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) damaged(path, v);
  return v;
}

function count(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) damaged(path, v);
  return v;
}

function object(v: unknown, path: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) damaged(path, v);
  return v as Record<string, unknown>;
}

function array(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) damaged(path, v);
  return v;
}

function tuple(v: unknown, length: number, path: string): unknown[] {
  if (!Array.isArray(v) || v.length !== length) damaged(`${path} (${length} fields)`, v);
  return v;
}

function damaged(path: string, v: unknown): never {
  const text = JSON.stringify(v) ?? String(v);
  throw new CoinstreamError('CONFIG', `cannot resume: the stored engine state is damaged: ${path} is ${text.length > 80 ? `${text.slice(0, 80)}...` : text}`);
}
