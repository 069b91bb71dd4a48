// What the page knows about one asset: its windows (by start), its newest trend, last price and rate.
// History (from /api) and live updates (from /api/stream) merge into the same model in any order: a
// window is replaced only by a version at least as new (updatedAt), so a late history response never
// overwrites a newer live update.
import type { AssetUpdate, DashboardStatus, TrendResult, WindowResult } from '../contract.js';

/** Windows kept per asset (the oldest are dropped beyond this). */
export const MAX_WINDOWS = 2000;

export class AssetModel {
  private readonly byStart = new Map<number, WindowResult>();
  private sortedCache: WindowResult[] | null = null;
  trend: TrendResult | null = null;
  price: { priceUsd: number; receivedAt: number } | null = null;
  tradesPerSecond: number | null = null;

  constructor(readonly asset: string) {}

  has(windowStart: number): boolean {
    return this.byStart.has(windowStart);
  }

  /** Merges windows; returns those that changed the model, ascending by start. */
  mergeWindows(windows: readonly WindowResult[]): WindowResult[] {
    const changed: WindowResult[] = [];
    for (const w of windows) {
      if (!isWindowResult(w)) continue;
      const old = this.byStart.get(w.windowStart);
      if (old && !isNewer(w, old)) continue;
      this.byStart.set(w.windowStart, w);
      changed.push(w);
    }
    if (changed.length === 0) return changed;
    this.sortedCache = null;
    if (this.byStart.size > MAX_WINDOWS) {
      const drop = this.sorted().slice(0, this.byStart.size - MAX_WINDOWS);
      for (const w of drop) this.byStart.delete(w.windowStart);
      this.sortedCache = null;
    }
    return changed.sort((a, b) => a.windowStart - b.windowStart);
  }

  /** Keeps the newest trend (by window start; the same window's later version replaces it). */
  mergeTrends(trends: readonly TrendResult[]): boolean {
    let changed = false;
    for (const t of trends) {
      if (!isTrendResult(t)) continue;
      if (this.trend === null || t.windowStart >= this.trend.windowStart) {
        this.trend = t;
        changed = true;
      }
    }
    return changed;
  }

  /** Applies one live update; returns the windows that changed. */
  apply(update: AssetUpdate): WindowResult[] {
    const changed = Array.isArray(update.windows) ? this.mergeWindows(update.windows) : [];
    if (Array.isArray(update.trends)) this.mergeTrends(update.trends);
    if (update.price && isFiniteNumber(update.price.priceUsd)) this.price = update.price;
    if (isFiniteNumber(update.tradesPerSecond)) this.tradesPerSecond = update.tradesPerSecond;
    return changed;
  }

  /** All windows, ascending by start. */
  sorted(): WindowResult[] {
    if (!this.sortedCache) this.sortedCache = [...this.byStart.values()].sort((a, b) => a.windowStart - b.windowStart);
    return this.sortedCache;
  }

  /** The newest `n` windows, newest first. */
  latest(n: number): WindowResult[] {
    const all = this.sorted();
    return all.slice(Math.max(0, all.length - n)).reverse();
  }
}

function isNewer(w: WindowResult, old: WindowResult): boolean {
  if (old.isFinal && !w.isFinal) return false;
  if (w.isFinal && !old.isFinal) return true;
  return !(isFiniteNumber(w.updatedAt) && isFiniteNumber(old.updatedAt)) || w.updatedAt >= old.updatedAt;
}

export function isFiniteNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

export function isWindowResult(v: unknown): v is WindowResult {
  return isObject(v) && typeof v.asset === 'string' && isFiniteNumber(v.windowStart) && isFiniteNumber(v.windowEnd);
}

export function isTrendResult(v: unknown): v is TrendResult {
  return isObject(v) && typeof v.asset === 'string' && isFiniteNumber(v.windowStart);
}

export function isAssetUpdate(v: unknown): v is AssetUpdate {
  return isObject(v) && typeof v.asset === 'string' && v.asset !== '';
}

export function isStatus(v: unknown): v is DashboardStatus {
  return isObject(v) && typeof v.state === 'string' && isObject(v.counters);
}
