// The dashboard's live stream (Server-Sent Events), independent of the HTTP framework: one hub per
// server subscribes to DashboardData once (while at least one client is connected), coalesces the
// events, numbers each message it sends with a global increasing id, keeps the last `ringSize` sent
// messages so that a client that reconnects with Last-Event-ID gets what it missed (or `reset` when
// that is no longer in the ring), and writes the same bytes to every client.
//
// Coalescing: at most one `asset` message per asset per `assetIntervalMs` (the first update of a quiet
// asset goes out at once; updates within the interval are merged and go out when it ends: windows and
// trends by (windowStart, windowEnd) keeping the newest, price and tradesPerSecond the newest), and at
// most one `status` per `statusIntervalMs` (the newest). Since every client gets the same messages,
// "per client" holds as well, and a message is serialised once whatever the number of clients.
//
// Ids start at the hub's start time in ms times 1000, so an id from an earlier run of the server
// (smaller) or from a later one (not sent yet) is never mistaken for one of ours: it gets `reset`.
import type { Clock, Timer } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import type { AssetUpdate, DashboardData, DashboardEvent, DashboardStatus, TrendResult, WindowResult } from './contract.js';

/** Where the hub writes one client's bytes: a node ServerResponse fits. */
export interface SseSink {
  write(chunk: string): boolean;
  end(): void;
  destroy(): void;
  readonly writableLength: number;
}

export interface SseHubOptions {
  clock?: Clock;
  /** Default 200 ms. */
  assetIntervalMs?: number;
  /** Default 1000 ms. */
  statusIntervalMs?: number;
  /** A `: ping` comment this often, default 15 s. */
  pingIntervalMs?: number;
  /** Messages kept for Last-Event-ID, default 2000. */
  ringSize?: number;
  /** A client with more unsent bytes than this is dropped (it reconnects and resumes), default 4 MiB. */
  maxBufferedBytes?: number;
  /**
   * How long the hub stays subscribed after the last client left, default 60 s: a page that reconnects
   * within it resumes from the ring; later, the updates in between were never seen and it gets reset.
   */
  idleUnsubscribeMs?: number;
  /** First id minus one; default clock.now() * 1000. */
  firstId?: number;
  /** Told when a client is dropped for being too slow. */
  onSlowClient?(buffered: number): void;
}

interface Client {
  sink: SseSink;
}

interface Pending<T> {
  value: T | null;
  lastSentAt: number;
  timer: Timer | null;
}

export class SseHub {
  private readonly clock: Clock;
  private readonly assetIntervalMs: number;
  private readonly statusIntervalMs: number;
  private readonly pingIntervalMs: number;
  private readonly ringSize: number;
  private readonly maxBufferedBytes: number;
  private readonly ring: { id: number; frame: string }[] = [];
  private ringStart = 0; // index of the oldest entry once the ring is full
  private lastId: number;
  private readonly clients = new Set<Client>();
  private unsubscribe: (() => void) | null = null;
  private listening = false;
  private pingTimer: Timer | null = null;
  private idleTimer: Timer | null = null;
  private readonly idleUnsubscribeMs: number;
  private readonly assets = new Map<string, Pending<AssetUpdate>>();
  private readonly status: Pending<DashboardStatus> = { value: null, lastSentAt: -Infinity, timer: null };
  private closed = false;

  constructor(
    private readonly data: DashboardData,
    private readonly options: SseHubOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.assetIntervalMs = options.assetIntervalMs ?? 200;
    this.statusIntervalMs = options.statusIntervalMs ?? 1000;
    this.pingIntervalMs = options.pingIntervalMs ?? 15_000;
    this.ringSize = Math.max(1, options.ringSize ?? 2000);
    this.maxBufferedBytes = options.maxBufferedBytes ?? 4 * 1024 * 1024;
    this.idleUnsubscribeMs = options.idleUnsubscribeMs ?? 60_000;
    this.lastId = options.firstId ?? Math.floor(this.clock.now()) * 1000;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Whether the hub listens to the data now (clients, or the grace period after the last one). */
  get subscribed(): boolean {
    return this.listening;
  }

  /** The id of the newest message sent (the first id minus one before any). */
  get currentId(): number {
    return this.lastId;
  }

  /**
   * Adds a client: writes the current status first, then, when `lastEventId` is given, the messages
   * after it (or `reset` if they are no longer all kept). Returns the function that removes it.
   */
  connect(sink: SseSink, lastEventId?: string): () => void {
    if (this.closed) throw new Error('the stream hub is closed');
    const client: Client = { sink };
    const resumeFrom = parseId(lastEventId);
    let frames: string;
    if (resumeFrom === null) {
      frames = frame(this.lastId, 'status', this.data.status());
    } else if (this.canResume(resumeFrom)) {
      frames = frame(resumeFrom, 'status', this.data.status()) + this.framesAfter(resumeFrom);
    } else {
      frames = frame(this.lastId, 'status', this.data.status()) + frame(this.lastId, 'reset', {});
    }
    // Written before the client joins and before subscribing: a source that emits from inside
    // subscribe() must not get ahead of the first status. Nothing is broadcast in between (one tick).
    sink.write(frames);
    this.clients.add(client);
    this.idleTimer?.cancel();
    this.idleTimer = null;
    if (!this.listening) {
      this.listening = true; // before subscribe(): a source may emit from inside it
      this.unsubscribe = this.data.subscribe((event) => this.onEvent(event));
    }
    if (!this.pingTimer) this.schedulePing();
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      this.remove(client);
    };
  }

  /**
   * Sends what waits for its interval (the last batch of a finished replay must reach the page), then
   * ends every client's stream and stops listening.
   */
  close(): void {
    if (this.closed) return;
    if (this.listening) {
      for (const pending of this.assets.values()) this.sendNow(pending, (u) => this.broadcast('asset', u));
      this.sendNow(this.status, (s) => this.broadcast('status', s));
    }
    this.closed = true;
    for (const client of [...this.clients]) {
      this.remove(client);
      client.sink.end();
    }
    this.stopListening();
  }

  private remove(client: Client): void {
    if (!this.clients.delete(client)) return;
    if (this.clients.size > 0 || this.idleTimer) return;
    if (this.idleUnsubscribeMs <= 0) this.stopListening();
    else this.idleTimer = this.clock.setTimeout(() => {
      this.idleTimer = null;
      if (this.clients.size === 0) this.stopListening();
    }, this.idleUnsubscribeMs);
  }

  /**
   * Nobody listens: unsubscribe, drop pending updates, timers and the ring. The updates from now on are
   * never seen, so the id moves on by one that is never sent: any id a client holds is then older than
   * the ring, and it gets `reset` (reload the history) instead of a silent hole.
   */
  private stopListening(): void {
    if (!this.listening) return;
    this.listening = false;
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.idleTimer?.cancel();
    this.idleTimer = null;
    this.ring.length = 0;
    this.ringStart = 0;
    this.lastId++;
    this.pingTimer?.cancel();
    this.pingTimer = null;
    for (const pending of this.assets.values()) pending.timer?.cancel();
    this.assets.clear();
    this.status.timer?.cancel();
    this.status.timer = null;
    this.status.value = null;
  }

  private canResume(id: number): boolean {
    if (id > this.lastId) return false; // not ours (another run of the server)
    if (id === this.lastId) return true;
    const oldest = this.ring.length === 0 ? null : this.ringAt(0).id;
    return oldest !== null && oldest <= id + 1;
  }

  private framesAfter(id: number): string {
    let out = '';
    for (let i = 0; i < this.ring.length; i++) {
      const entry = this.ringAt(i);
      if (entry.id > id) out += entry.frame;
    }
    return out;
  }

  private ringAt(i: number): { id: number; frame: string } {
    return this.ring[(this.ringStart + i) % this.ring.length];
  }

  private onEvent(event: DashboardEvent): void {
    if (this.closed || !this.listening) return;
    if (event.type === 'asset') {
      let pending = this.assets.get(event.update.asset);
      if (!pending) {
        pending = { value: null, lastSentAt: -Infinity, timer: null };
        this.assets.set(event.update.asset, pending);
      }
      pending.value = pending.value ? mergeUpdates(pending.value, event.update) : cloneUpdate(event.update);
      this.throttle(pending, this.assetIntervalMs, (u) => this.broadcast('asset', u));
    } else {
      this.status.value = event.status;
      this.throttle(this.status, this.statusIntervalMs, (s) => this.broadcast('status', s));
    }
  }

  /** Sends a pending value now, whatever its interval. */
  private sendNow<T>(pending: Pending<T>, send: (value: T) => void): void {
    pending.timer?.cancel();
    pending.timer = null;
    if (pending.value === null) return;
    const value = pending.value;
    pending.value = null;
    send(value);
  }

  /** Sends now if the last send is at least `interval` ago, else once the interval has passed. */
  private throttle<T>(pending: Pending<T>, interval: number, send: (value: T) => void): void {
    if (pending.timer) return; // already scheduled; the value was merged
    const now = this.clock.now();
    const flush = () => {
      pending.timer = null;
      const value = pending.value;
      if (value === null) return;
      pending.value = null;
      pending.lastSentAt = this.clock.now();
      send(value);
    };
    const wait = pending.lastSentAt + interval - now;
    if (wait <= 0) flush();
    else pending.timer = this.clock.setTimeout(flush, wait);
  }

  private broadcast(event: string, data: unknown): void {
    const id = ++this.lastId;
    const text = frame(id, event, data);
    if (this.ring.length < this.ringSize) {
      this.ring.push({ id, frame: text });
    } else {
      this.ring[this.ringStart] = { id, frame: text };
      this.ringStart = (this.ringStart + 1) % this.ringSize;
    }
    this.writeAll(text);
  }

  private writeAll(text: string): void {
    for (const client of [...this.clients]) {
      const buffered = client.sink.writableLength;
      if (buffered > this.maxBufferedBytes) {
        // A client that does not read: drop it rather than buffer without bound. EventSource reconnects
        // with Last-Event-ID and gets what it missed from the ring (or reset).
        this.options.onSlowClient?.(buffered);
        this.remove(client);
        client.sink.destroy();
        continue;
      }
      client.sink.write(text);
    }
  }

  private schedulePing(): void {
    this.pingTimer = this.clock.setTimeout(() => {
      this.pingTimer = null;
      if (this.clients.size === 0 || this.closed) return;
      this.writeAll(': ping\n\n');
      this.schedulePing();
    }, this.pingIntervalMs);
  }
}

/** One SSE message. JSON has no raw newlines, so `data:` is one line. */
export function frame(id: number, event: string, data: unknown): string {
  return `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data, jsonSafe)}\n\n`;
}

/** BigInt (a store's COUNT) as a number: JSON.stringify would throw. */
export function jsonSafe(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? Number(value) : value;
}

function parseId(raw: string | undefined): number | null {
  if (raw === undefined) return null;
  const text = raw.trim();
  if (!/^\d{1,16}$/.test(text)) return -1; // not one of ours: reset
  const id = Number(text);
  return Number.isSafeInteger(id) ? id : -1;
}

function cloneUpdate(u: AssetUpdate): AssetUpdate {
  const out: AssetUpdate = { asset: u.asset };
  if (u.windows) out.windows = [...u.windows];
  if (u.trends) out.trends = [...u.trends];
  if (u.price) out.price = u.price;
  if (u.tradesPerSecond !== undefined) out.tradesPerSecond = u.tradesPerSecond;
  return out;
}

/** `next` is newer than `prev`: its windows/trends replace those with the same (start, end). */
export function mergeUpdates(prev: AssetUpdate, next: AssetUpdate): AssetUpdate {
  const out: AssetUpdate = { asset: prev.asset };
  const windows = mergeRows<WindowResult>(prev.windows, next.windows);
  if (windows) out.windows = windows;
  const trends = mergeRows<TrendResult>(prev.trends, next.trends);
  if (trends) out.trends = trends;
  const price = next.price ?? prev.price;
  if (price) {
    const oldest = Math.min(prev.price?.oldestReceivedAt ?? prev.price?.receivedAt ?? Infinity, next.price?.oldestReceivedAt ?? next.price?.receivedAt ?? Infinity);
    out.price = Number.isFinite(oldest) ? { ...price, oldestReceivedAt: oldest } : price;
  }
  const tps = next.tradesPerSecond ?? prev.tradesPerSecond;
  if (tps !== undefined) out.tradesPerSecond = tps;
  return out;
}

function mergeRows<T extends { windowStart: number; windowEnd: number }>(a: T[] | undefined, b: T[] | undefined): T[] | undefined {
  if (!a) return b ? [...b] : undefined;
  if (!b) return a;
  const byKey = new Map<string, T>();
  for (const row of a) byKey.set(`${row.windowStart}:${row.windowEnd}`, row);
  for (const row of b) byKey.set(`${row.windowStart}:${row.windowEnd}`, row);
  return [...byKey.values()].sort((x, y) => x.windowStart - y.windowStart || x.windowEnd - y.windowEnd);
}
