// The dashboard's data while `run` or `process` runs: fed by the pipeline(s) as a PipelineObserver, held
// in memory (the newest windows and trends per asset, bounded), never read back from a store the run
// holds open. Prices and trades per second come from source events as they arrive, so the page moves
// with the trades; windows and trends come from each written batch (every trigger).
import type { Clock, Timer } from '../core/clock.js';
import type { RejectReason } from '../core/trade.js';
import { TradeColumns } from '../core/trade-columns.js';
import type { TrendResult, WindowResult } from '../engine/contract.js';
import type { PipelineObserver, PipelineSummary } from '../pipeline/pipeline.js';
import type { OutputBatch } from '../sinks/contract.js';
import type { SourceEvent } from '../sources/contract.js';
import type { AssetUpdate, DashboardData, DashboardEvent, DashboardStatus } from './contract.js';

/** Windows (and trends) kept per asset: 1,440 one-minute windows is a day. */
const KEEP_PER_ASSET = 1_440;
/** Trades per second over this span. */
const RATE_SPAN_MS = 5_000;
/** How often the rates of assets whose trades stopped are brought down (else they showed the last rate for ever). */
const RATE_TICK_MS = 1_000;

interface AssetState {
  windows: Map<number, WindowResult>;
  trends: Map<number, TrendResult>;
  /** Recent trades events of this asset, oldest first: when, and how many trades (for trades per second). */
  arrivals: { at: number; n: number }[];
  arrivalsHead: number;
  /** Trades in arrivals[arrivalsHead..]. */
  recentTrades: number;
}

export class LiveDashboard implements DashboardData {
  private readonly assetsByName = new Map<string, AssetState>();
  private readonly listeners = new Set<(e: DashboardEvent) => void>();
  private readonly sources = new Map<string, boolean>();
  private readonly counters = { accepted: 0, rejected: { malformed: 0, invalid: 0, late: 0, duplicate: 0 } as Record<RejectReason, number>, gaps: 0 };
  private lastCommitAt: number | null = null;
  private watermark: number | null = null;
  private state: DashboardStatus['state'] = 'live';
  private consumerLag: Record<string, number> | undefined;
  private running = 0;
  /** Some pipeline stopped before the end of its input (a failure, a signal, --batches). */
  private stoppedEarly = false;
  /** Armed while some asset has trades within the rate span (tickRates). */
  private rateTimer: Timer | null = null;

  /** `trendSpanMs`: the run's --trend-span, which the page names beside each trend's change. */
  constructor(
    private readonly clock: Clock,
    private readonly trendSpanMs: number | null = null,
  ) {}

  /** One observer per pipeline (`process` runs one per partition). */
  observer(): PipelineObserver {
    this.running++;
    let stopped = false;
    return {
      event: (e) => this.onEvent(e),
      written: (batch, _ms, at) => this.onBatch(batch, at),
      stopped: (reason) => {
        if (stopped) return;
        stopped = true;
        this.onStopped(reason);
      },
    };
  }

  setConsumerLag(lag: Record<string, number>): void {
    this.consumerLag = lag;
    this.emitStatus();
  }

  async assets(): Promise<string[]> {
    return [...this.assetsByName.keys()].filter((a) => this.assetsByName.get(a)!.windows.size > 0).sort();
  }

  async windows(q: { asset?: string; from: number; to: number; limit?: number }): Promise<WindowResult[]> {
    return this.select((s) => s.windows, q);
  }

  async trends(q: { asset?: string; from: number; to: number; limit?: number }): Promise<TrendResult[]> {
    return this.select((s) => s.trends, q);
  }

  status(): DashboardStatus {
    return {
      state: this.state,
      sources: [...this.sources].map(([name, connected]) => ({ name, connected })),
      counters: { accepted: this.counters.accepted, rejected: { ...this.counters.rejected }, gaps: this.counters.gaps },
      lastCommitAt: this.lastCommitAt,
      watermark: this.watermark,
      trendSpanMs: this.trendSpanMs,
      ...(this.consumerLag ? { consumerLag: { ...this.consumerLag } } : {}),
    };
  }

  subscribe(listener: (event: DashboardEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.cancelRateTick();
    this.listeners.clear();
  }

  private select<R extends { asset: string; windowStart: number; windowEnd: number }>(of: (s: AssetState) => Map<number, R>, q: { asset?: string; from: number; to: number; limit?: number }): R[] {
    const names = q.asset !== undefined ? [q.asset] : [...this.assetsByName.keys()].sort();
    const out: R[] = [];
    for (const name of names) {
      const state = this.assetsByName.get(name);
      if (!state) continue;
      out.push(...[...of(state).values()].filter((r) => r.windowStart >= q.from && r.windowEnd <= q.to).sort((a, b) => a.windowStart - b.windowStart || a.windowEnd - b.windowEnd));
    }
    if (q.limit === undefined || out.length <= q.limit) return out;
    // The newest `limit` over all the assets asked for, kept in asset, then start order.
    const newest = new Set([...out].sort((a, b) => a.windowStart - b.windowStart || a.windowEnd - b.windowEnd).slice(out.length - q.limit));
    return out.filter((r) => newest.has(r));
  }

  private asset(name: string): AssetState {
    let s = this.assetsByName.get(name);
    if (!s) {
      s = { windows: new Map(), trends: new Map(), arrivals: [], arrivalsHead: 0, recentTrades: 0 };
      this.assetsByName.set(name, s);
    }
    return s;
  }

  private onEvent(e: SourceEvent): void {
    switch (e.kind) {
      case 'trades': {
        if (!this.sources.get(e.source)) this.sourceState(e.source, true);
        const now = this.clock.now();
        // The newest trade of each asset in this event: one update per asset, not per trade.
        // Updated in place, not replaced per trade: 28 -> 19 ms per million trades (1M trades, 4 assets).
        const newest = new Map<string, { priceUsd: number; receivedAt: number; oldestReceivedAt: number; n: number }>();
        const saw = (base: string, priceUsd: number, receivedAt: number) => {
          const seen = newest.get(base);
          if (seen === undefined) {
            newest.set(base, { priceUsd, receivedAt, oldestReceivedAt: receivedAt, n: 1 });
            return;
          }
          seen.priceUsd = priceUsd;
          seen.receivedAt = receivedAt;
          if (receivedAt < seen.oldestReceivedAt) seen.oldestReceivedAt = receivedAt;
          seen.n++;
        };
        const trades = e.trades;
        const eventAt = e.receivedAt ?? now;
        if (trades instanceof TradeColumns) {
          // A replay's columns: read in place, no object per trade.
          for (let i = 0; i < trades.length; i++) {
            const own = trades.receivedAt[i];
            saw(trades.keys[trades.key[i]].base, trades.priceUsd[i], Number.isNaN(own) ? eventAt : own);
          }
        } else {
          for (const t of trades) saw(t.base, t.priceUsd, t.receivedAt ?? eventAt);
        }
        for (const [name, last] of newest) {
          const s = this.asset(name);
          // One entry per event, not per trade: at replay speed an event carries thousands of trades.
          s.arrivals.push({ at: now, n: last.n });
          s.recentTrades += last.n;
          dropOldArrivals(s, now);
          this.emit({ type: 'asset', update: { asset: name, price: { priceUsd: last.priceUsd, receivedAt: last.receivedAt, oldestReceivedAt: last.oldestReceivedAt }, tradesPerSecond: rate(s) } });
        }
        this.armRateTick();
        return;
      }
      case 'connected':
        return this.sourceState(e.source, true);
      case 'disconnected':
        return this.sourceState(e.source, false);
      case 'gap':
        this.counters.gaps++;
        return this.emitStatus();
      default:
        return;
    }
  }

  private sourceState(name: string, connected: boolean): void {
    this.sources.set(name, connected);
    if (this.state === 'live' || this.state === 'reconnecting') this.state = [...this.sources.values()].every(Boolean) ? 'live' : 'reconnecting';
    this.emitStatus();
  }

  private onBatch(batch: OutputBatch, at: number): void {
    this.counters.accepted += batch.trades.length;
    for (const r of batch.rejected) this.counters.rejected[r.reason]++;
    this.lastCommitAt = at;
    if (Number.isFinite(batch.watermark)) this.watermark = batch.watermark;
    const updates = new Map<string, AssetUpdate>();
    const update = (asset: string) => {
      let u = updates.get(asset);
      if (!u) updates.set(asset, (u = { asset }));
      return u;
    };
    for (const w of batch.windows) {
      const s = this.asset(w.asset);
      s.windows.set(w.windowStart, w);
      trim(s.windows);
      (update(w.asset).windows ??= []).push(w);
    }
    for (const t of batch.trends) {
      const s = this.asset(t.asset);
      s.trends.set(t.windowStart, t);
      trim(s.trends);
      (update(t.asset).trends ??= []).push(t);
    }
    for (const u of updates.values()) this.emit({ type: 'asset', update: u });
    this.emitStatus();
  }

  private onStopped(reason: PipelineSummary['reason'] | 'failed'): void {
    if (reason !== 'end-of-input' && reason !== 'already-finished') this.stoppedEarly = true;
    if (--this.running > 0) return;
    this.state = this.stoppedEarly ? 'stopped' : 'replay-finished';
    for (const name of this.sources.keys()) this.sources.set(name, false);
    // No trades come any more: every rate is 0 now, and no timer is left to keep the process alive.
    this.cancelRateTick();
    for (const [name, s] of this.assetsByName) {
      if (s.recentTrades === 0) continue;
      dropOldArrivals(s, Infinity);
      this.emit({ type: 'asset', update: { asset: name, tradesPerSecond: 0 } });
    }
    this.emitStatus();
  }

  private armRateTick(): void {
    if (this.rateTimer !== null || this.running === 0) return;
    this.rateTimer = this.clock.setTimeout(() => {
      this.rateTimer = null;
      this.tickRates();
    }, RATE_TICK_MS);
  }

  private cancelRateTick(): void {
    this.rateTimer?.cancel();
    this.rateTimer = null;
  }

  /** Sends the rate of each asset whose trades have aged out of the span since its last update. */
  private tickRates(): void {
    const now = this.clock.now();
    let trading = false;
    for (const [name, s] of this.assetsByName) {
      if (s.recentTrades === 0) continue;
      const before = rate(s);
      dropOldArrivals(s, now);
      if (rate(s) !== before) this.emit({ type: 'asset', update: { asset: name, tradesPerSecond: rate(s) } });
      if (s.recentTrades > 0) trading = true;
    }
    if (trading) this.armRateTick();
  }

  private emitStatus(): void {
    if (this.listeners.size === 0) return;
    this.emit({ type: 'status', status: this.status() });
  }

  private emit(event: DashboardEvent): void {
    for (const l of this.listeners) l(event);
  }
}

/** Forgets the arrivals older than the rate span (all of them at now = Infinity). */
function dropOldArrivals(s: AssetState, now: number): void {
  while (s.arrivalsHead < s.arrivals.length && s.arrivals[s.arrivalsHead].at < now - RATE_SPAN_MS) s.recentTrades -= s.arrivals[s.arrivalsHead++].n;
  if (s.arrivalsHead > 10_000 || s.arrivalsHead === s.arrivals.length) (s.arrivals = s.arrivals.slice(s.arrivalsHead)), (s.arrivalsHead = 0);
}

/** Trades per second over the rate span. */
function rate(s: AssetState): number {
  return Math.round((s.recentTrades * 1000) / RATE_SPAN_MS);
}

/** Keeps the newest KEEP_PER_ASSET rows (by window start). */
function trim<R>(rows: Map<number, R>): void {
  if (rows.size <= KEEP_PER_ASSET) return;
  const starts = [...rows.keys()].sort((a, b) => a - b);
  for (const start of starts.slice(0, rows.size - KEEP_PER_ASSET)) rows.delete(start);
}
