// One resilient websocket client under every connector: connect timeout, liveness (pings and a stale
// watchdog that tells a quiet market from a dead socket), capped exponential backoff with jitter,
// planned reconnects before a server's hard limit, re-subscription on every connect, and backpressure:
// when the consumer falls behind, the socket stops reading (TCP pushes back on the sender) instead of
// queueing without limit.
import WebSocket from 'ws';
import type { Clock, Timer } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import { backoffDelay, type BackoffOptions } from '../../core/backoff.js';

export { backoffDelay, type BackoffOptions };

export type WsEvent =
  | { kind: 'open'; url: string; attempt: number; at: number }
  | { kind: 'message'; data: string; at: number }
  /** `fatal`: retrying cannot help (the server refused our credentials); the client stops. */
  | { kind: 'close'; reason: string; retryInMs: number; at: number; fatal: boolean };

export interface WsClientOptions {
  url: string;
  /** For logs: `binance`. */
  name: string;
  subscribeMessages: () => string[];
  /** Text to send as a ping; websocket ping frames when absent. */
  appPing?: string;
  /** Liveness comes from the feed's own heartbeat messages: no pings, pongs do not count. */
  heartbeatChannel?: boolean;
  /** Ping after this much silence. */
  pingAfterMs: number;
  /** Reconnect after this much silence (no message, no pong). */
  staleAfterMs: number;
  connectTimeoutMs: number;
  maxConnectionAgeMs?: number;
  backoff: BackoffOptions;
  clock: Clock;
  logger: Logger;
  /** Injected for tests; Math.random otherwise. */
  random?: () => number;
  /** When to pause and resume the socket; DEFAULT_QUEUE_LIMITS otherwise. */
  queue?: Partial<QueueLimits>;
  /**
   * Largest frame the socket takes at all: a bigger one closes the connection (code 1009) and it is
   * reconnected. Memory per frame stays bounded; frames smaller than this but over the feed's line
   * limit are rejected one by one by the feed source, and the connection goes on.
   */
  maxPayloadBytes?: number;
}

/**
 * Backpressure. Once `highWaterMessages` messages or `highWaterBytes` bytes (UTF-8, as received) wait
 * for the consumer, the socket is paused: it stops reading, and TCP flow control pushes back on the
 * server. It resumes once the consumer has drained the queue to both low-water marks (default: half).
 * The queue can exceed a high-water mark by what one socket read had already brought in (<= 64 KiB).
 * A long pause has a price: the server's pings and our pongs wait too, and an exchange may drop a
 * connection that does not keep up; the client then reconnects as after any other close.
 */
export interface QueueLimits {
  highWaterMessages: number;
  highWaterBytes: number;
  lowWaterMessages: number;
  lowWaterBytes: number;
}

export const DEFAULT_QUEUE_LIMITS: Readonly<Pick<QueueLimits, 'highWaterMessages' | 'highWaterBytes'>> = { highWaterMessages: 1000, highWaterBytes: 8 * 1024 * 1024 };

export function queueLimits(q: Partial<QueueLimits> = {}): QueueLimits {
  const highWaterMessages = q.highWaterMessages ?? DEFAULT_QUEUE_LIMITS.highWaterMessages;
  const highWaterBytes = q.highWaterBytes ?? DEFAULT_QUEUE_LIMITS.highWaterBytes;
  const limits = {
    highWaterMessages, highWaterBytes,
    lowWaterMessages: q.lowWaterMessages ?? Math.floor(highWaterMessages / 2),
    lowWaterBytes: q.lowWaterBytes ?? Math.floor(highWaterBytes / 2),
  };
  if (!(limits.highWaterMessages >= 1 && limits.highWaterBytes >= 1)) throw new RangeError('queue high-water marks must be at least 1');
  if (!(limits.lowWaterMessages >= 0 && limits.lowWaterMessages < limits.highWaterMessages && limits.lowWaterBytes >= 0 && limits.lowWaterBytes < limits.highWaterBytes)) {
    throw new RangeError('queue low-water marks must be below the high-water marks');
  }
  return limits;
}

/** ws' own default is 100 MiB. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 16 << 20;

/** Binance allows 300 connects per 5 minutes per IP; these defaults stay far below any such limit. */
export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 1000, maxMs: 60_000, factor: 2 };

/**
 * A small async FIFO: socket callbacks push, the generator pulls. It never drops anything; it counts
 * the messages and bytes waiting so that the client can pause the socket, and tells it after each take.
 */
class Queue<T> {
  private items: ({ item: T; bytes: number | undefined } | undefined)[] = [];
  private head = 0;
  private waiting: ((v: T) => void) | null = null;
  /** Messages (items pushed with a byte count) waiting, and their bytes. */
  messages = 0;
  bytes = 0;
  constructor(private readonly onTake: () => void) {}
  /** `bytes`: the item is a message, counted against the limits. */
  push(item: T, bytes?: number): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w(item);
      return;
    }
    this.items.push({ item, bytes });
    if (bytes !== undefined) {
      this.messages++;
      this.bytes += bytes;
    }
  }
  next(): Promise<T> {
    if (this.head < this.items.length) {
      const entry = this.items[this.head]!;
      this.items[this.head++] = undefined;
      if (this.head === this.items.length) {
        this.items = [];
        this.head = 0;
      } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      if (entry.bytes !== undefined) {
        this.messages--;
        this.bytes -= entry.bytes;
        this.onTake();
      }
      return Promise.resolve(entry.item);
    }
    return new Promise((resolve) => (this.waiting = resolve));
  }
}

function formatBytes(n: number): string {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

type Internal = WsEvent | { kind: 'ended'; reason: string; planned: boolean; connected: boolean; fatal: boolean };

/**
 * Connects and keeps connecting until the signal aborts. Yields open / message / close events.
 * `failures` (for the backoff) resets once a connection has delivered a message.
 */
export async function* resilientSocket(o: WsClientOptions, signal: AbortSignal): AsyncGenerator<WsEvent> {
  const random = o.random ?? Math.random;
  const limits = queueLimits(o.queue);
  let failures = 0;
  let attempt = 0;
  while (!signal.aborted) {
    attempt++;
    // Backpressure state of this connection: paused since pausedAt; the largest queue seen meanwhile.
    let paused = false;
    let pausedAt = 0;
    let peakMessages = 0;
    let peakBytes = 0;
    const queue: Queue<Internal> = new Queue<Internal>(() => {
      if (paused && queue.messages <= limits.lowWaterMessages && queue.bytes <= limits.lowWaterBytes) resume();
    });
    const socket = new WebSocket(o.url, { handshakeTimeout: o.connectTimeoutMs, perMessageDeflate: false, maxPayload: o.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES });
    let connected = false;
    let gotMessage = false;
    let ended = false;
    let lastInbound = o.clock.now();
    let openedAt = 0;
    let watchdog: Timer | null = null;
    const pause = () => {
      paused = true;
      pausedAt = o.clock.now();
      peakMessages = queue.messages;
      peakBytes = queue.bytes;
      socket.pause();
      const bytesHit = queue.bytes >= limits.highWaterBytes;
      o.logger.warn(
        { feed: o.name, url: o.url, queued: queue.messages, queuedBytes: queue.bytes },
        `${o.name}: the pipeline is behind; pausing the socket (${queue.messages} messages${bytesHit ? `, ${formatBytes(queue.bytes)}` : ''} queued)`,
      );
    };
    const resume = () => {
      paused = false;
      const now = o.clock.now();
      const pausedMs = now - pausedAt;
      // The silence while paused was ours: the server gets a whole stale period from here.
      lastInbound = now;
      if (!ended) socket.resume();
      o.logger.info(
        { feed: o.name, url: o.url, pausedMs, peakQueued: peakMessages, peakQueuedBytes: peakBytes, queued: queue.messages, socketOpen: !ended },
        `${o.name}: the pipeline caught up after ${(pausedMs / 1000).toFixed(1)} s paused (peak ${peakMessages} messages, ${formatBytes(peakBytes)} queued); ${ended ? 'the socket had closed meanwhile' : 'resuming the socket'}`,
      );
    };
    const end = (reason: string, planned = false, fatal = false) => {
      if (ended) return;
      ended = true;
      watchdog?.cancel();
      socket.removeAllListeners();
      socket.on('error', () => undefined); // late errors of a socket we are done with
      if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) socket.terminate();
      queue.push({ kind: 'ended', reason, planned, connected, fatal });
    };
    const onAbort = () => end('stopped');
    signal.addEventListener('abort', onAbort, { once: true });

    const check = () => {
      const now = o.clock.now();
      const silent = now - lastInbound;
      if (o.maxConnectionAgeMs !== undefined && now - openedAt >= o.maxConnectionAgeMs) {
        end(`planned reconnect after ${Math.round((now - openedAt) / 60_000)} min, before the server's connection limit`, true);
        return;
      }
      // While paused we are not reading, so silence is not the server's fault; pings still go out.
      if (!paused && silent >= o.staleAfterMs) {
        end(`stale: no message or pong for ${Math.round(silent / 1000)} s`);
        return;
      }
      if (!o.heartbeatChannel && silent >= o.pingAfterMs && socket.readyState === WebSocket.OPEN) {
        if (o.appPing !== undefined) socket.send(o.appPing);
        else socket.ping();
      }
      watchdog = o.clock.setTimeout(check, Math.max(50, Math.min(o.pingAfterMs, o.staleAfterMs) / 4));
    };

    socket.on('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0;
      const hint = status === 429 ? ' (rate limited)' : status === 451 ? ' (the exchange refuses connections from this location)' : status === 401 || status === 403 ? ' (refused: check the API key)' : '';
      res.resume();
      end(`handshake refused: HTTP ${status}${hint}`, false, status === 401);
    });
    socket.on('error', (err) => end(`connection failed: ${err.message}`));
    socket.on('close', (code, reason) => end(`closed by server: code ${code}${reason.length ? ` ${reason.toString()}` : ''}`));
    socket.on('open', () => {
      connected = true;
      openedAt = o.clock.now();
      lastInbound = openedAt;
      queue.push({ kind: 'open', url: o.url, attempt, at: openedAt });
      for (const m of o.subscribeMessages()) socket.send(m);
      watchdog = o.clock.setTimeout(check, Math.max(50, Math.min(o.pingAfterMs, o.staleAfterMs) / 4));
    });
    socket.on('pong', () => {
      if (!o.heartbeatChannel) lastInbound = o.clock.now();
    });
    socket.on('message', (data, isBinary) => {
      lastInbound = o.clock.now();
      if (!gotMessage) {
        gotMessage = true;
        failures = 0;
      }
      const text = isBinary ? Buffer.from(data as Buffer).toString('utf8') : data.toString();
      const bytes = Buffer.isBuffer(data) ? data.length : Buffer.byteLength(text);
      queue.push({ kind: 'message', data: text, at: lastInbound }, bytes);
      if (paused) {
        peakMessages = Math.max(peakMessages, queue.messages);
        peakBytes = Math.max(peakBytes, queue.bytes);
      } else if (!ended && (queue.messages >= limits.highWaterMessages || queue.bytes >= limits.highWaterBytes)) {
        pause();
      }
    });

    let retryInMs = 0;
    try {
      for (;;) {
        const ev = await queue.next();
        if (ev.kind !== 'ended') {
          yield ev;
          continue;
        }
        if (signal.aborted) return;
        if (ev.fatal) {
          yield { kind: 'close', reason: ev.reason, retryInMs: 0, at: o.clock.now(), fatal: true };
          return;
        }
        if (!ev.planned) {
          failures++;
          retryInMs = backoffDelay(failures, o.backoff, random);
        }
        o.logger.warn({ feed: o.name, url: o.url, attempt, reason: ev.reason, retryInMs }, `${o.name}: ${ev.reason}; reconnecting in ${(retryInMs / 1000).toFixed(1)} s`);
        yield { kind: 'close', reason: ev.reason, retryInMs, at: o.clock.now(), fatal: false };
        break;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (!ended) end('stopped');
    }
    try {
      await o.clock.sleep(retryInMs, signal);
    } catch {
      return; // stopped while waiting out the backoff
    }
  }
}
