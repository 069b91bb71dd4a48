// One resilient websocket client under every connector: connect timeout, liveness (pings and a stale
// watchdog that tells a quiet market from a dead socket), capped exponential backoff with jitter,
// planned reconnects before a server's hard limit, re-subscription on every connect.
import WebSocket from 'ws';
import type { Clock, Timer } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';

export type WsEvent =
  | { kind: 'open'; url: string; attempt: number; at: number }
  | { kind: 'message'; data: string; at: number }
  /** `fatal`: retrying cannot help (the server refused our credentials); the client stops. */
  | { kind: 'close'; reason: string; retryInMs: number; at: number; fatal: boolean };

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
}

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
}

/** Binance allows 300 connects per 5 minutes per IP; these defaults stay far below any such limit. */
export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 1000, maxMs: 60_000, factor: 2 };

/** Delay before reconnect attempt n (1-based): exponential, capped, with "equal jitter" (half fixed, half random). */
export function backoffDelay(failures: number, b: BackoffOptions, random: () => number): number {
  const exp = Math.min(b.maxMs, b.initialMs * b.factor ** Math.max(0, failures - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/** A small async queue: callbacks push, the generator pulls. */
class Queue<T> {
  private items: T[] = [];
  private waiting: ((v: T) => void) | null = null;
  push(item: T): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w(item);
    } else {
      this.items.push(item);
    }
  }
  next(): Promise<T> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise((resolve) => (this.waiting = resolve));
  }
}

type Internal = WsEvent | { kind: 'ended'; reason: string; planned: boolean; connected: boolean; fatal: boolean };

/**
 * Connects and keeps connecting until the signal aborts. Yields open / message / close events.
 * `failures` (for the backoff) resets once a connection has delivered a message.
 */
export async function* resilientSocket(o: WsClientOptions, signal: AbortSignal): AsyncGenerator<WsEvent> {
  const random = o.random ?? Math.random;
  let failures = 0;
  let attempt = 0;
  while (!signal.aborted) {
    attempt++;
    const queue = new Queue<Internal>();
    const socket = new WebSocket(o.url, { handshakeTimeout: o.connectTimeoutMs, perMessageDeflate: false });
    let connected = false;
    let gotMessage = false;
    let ended = false;
    let lastInbound = o.clock.now();
    let openedAt = 0;
    let watchdog: Timer | null = null;
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
      if (silent >= o.staleAfterMs) {
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
      queue.push({ kind: 'message', data: text, at: lastInbound });
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
