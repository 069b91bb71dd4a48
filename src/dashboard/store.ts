// The dashboard's data from a store (`coinstream dashboard --store SPEC`): history through the
// StoreReader of any store kind (DuckDB, MySQL, PostgreSQL, Delta), and live updates by asking it again
// every few seconds for the windows that changed (a store written by `process` on other machines moves
// on the page within that interval).
import type { TrendResult, WindowResult } from '../engine/contract.js';
import type { Logger } from '../core/logger.js';
import type { StoreReader } from '../sinks/contract.js';
import type { AssetUpdate, DashboardData, DashboardEvent, DashboardStatus } from './contract.js';

/** How far back the assets list and each poll look, from the newest window end. */
const RECENT_MS = 7 * 24 * 3600 * 1000;
const POLL_RECENT_MS = 15 * 60 * 1000;

export class StoreDashboard implements DashboardData {
  private readonly listeners = new Set<(e: DashboardEvent) => void>();
  private timer: NodeJS.Timeout | null = null;
  /** What the last poll saw per window key: updated_at, so that only changed windows are sent. */
  private seen = new Map<string, number>();
  private rejected: Record<string, number> = {};
  /** The stored job's --trend-span (start()). */
  private trendSpanMs: number | null = null;
  private polling = false;

  constructor(
    private readonly reader: StoreReader,
    private readonly logger: Logger,
    private readonly pollMs = 2_000,
  ) {}

  /** Reads what the status says of the stored job (its --trend-span) before the first request. */
  async start(): Promise<void> {
    this.trendSpanMs = trendSpanOf(await this.reader.jobSettings());
  }

  assets(): Promise<string[]> {
    return this.reader.assets({ lastMs: RECENT_MS });
  }

  // The page asks for the newest `limit`: the store picks them, rather than this process reading the
  // whole range (a store of 216k windows took 6 s and ~1 GB per request).
  windows(q: { asset?: string; from: number; to: number; limit?: number }): Promise<WindowResult[]> {
    return this.reader.windowsBetween({ ...q, newest: true });
  }

  trends(q: { asset?: string; from: number; to: number; limit?: number }): Promise<TrendResult[]> {
    return this.reader.trends({ ...q, newest: true });
  }

  status(): DashboardStatus {
    const rejected = { malformed: 0, invalid: 0, late: 0, duplicate: 0, ...this.rejected };
    // A store counts no accepted trades nor gaps: unknown, not 0 (the page showed "accepted 0" for a full store).
    return { state: 'store', sources: [{ name: this.reader.name, connected: true }], counters: { accepted: null, rejected, gaps: null }, lastCommitAt: null, watermark: null, trendSpanMs: this.trendSpanMs };
  }

  subscribe(listener: (event: DashboardEvent) => void): () => void {
    this.listeners.add(listener);
    if (!this.timer) {
      void this.poll(true);
      this.timer = setInterval(() => void this.poll(false), this.pollMs);
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = null;
      }
    };
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.listeners.clear();
    await this.reader.close();
  }

  /** Sends the windows (with their trends) that changed since the last poll. */
  private async poll(first: boolean): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      this.rejected = await this.reader.rejectedCounts();
      const rows = await this.reader.latestWindows({ lastMs: POLL_RECENT_MS });
      const updates = new Map<string, AssetUpdate>();
      // Only the windows this poll saw are remembered: older ones are not asked for again (else the map
      // grew by every window the store ever held, ~430k a day for 300 assets).
      const seen = new Map<string, number>();
      for (const { window, trend } of rows) {
        const key = `${window.asset}\u0000${window.windowStart}\u0000${window.windowEnd}`;
        seen.set(key, window.updatedAt);
        if (this.seen.get(key) === window.updatedAt) continue;
        if (first) continue;
        let u = updates.get(window.asset);
        if (!u) updates.set(window.asset, (u = { asset: window.asset, windows: [], trends: [] }));
        u.windows!.push(window);
        if (trend) u.trends!.push(trend);
      }
      this.seen = seen;
      for (const u of updates.values()) this.emit({ type: 'asset', update: u });
      this.emit({ type: 'status', status: this.status() });
    } catch (err) {
      this.logger.warn({ err: (err as Error).message, store: this.reader.name }, `reading ${this.reader.name} for the dashboard failed: ${(err as Error).message}; trying again in ${this.pollMs / 1000} s`);
    } finally {
      this.polling = false;
    }
  }

  private emit(event: DashboardEvent): void {
    for (const l of this.listeners) l(event);
  }
}

/** --trend-span from a stored job's settings (JSON), or null. */
function trendSpanOf(settings: string | null): number | null {
  try {
    const span = settings === null ? null : (JSON.parse(settings) as { trendSpanMs?: unknown }).trendSpanMs;
    return typeof span === 'number' && span > 0 ? span : null;
  } catch {
    return null;
  }
}
