// A live feed as a Source: the resilient socket, the exchange's protocol, and two guards every feed
// needs. De-duplication: a reconnect can re-send trades, so (exchange, symbol, tradeId) seen recently
// are rejected as 'duplicate' (counted and kept, never aggregated twice). Gaps: where ids are
// sequential, a jump means trades never reached us; it is logged, counted and emitted as an event.
import type { Clock } from '../../core/clock.js';
import { disconnectCause, feedConnects, feedDisconnects, feedDuplicates, feedGaps } from '../../core/metrics.js';
import { CoinstreamError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { capRaw, type Trade } from '../../core/trade.js';
import type { Source, SourceEvent, TradeOrigins } from '../contract.js';
import type { FeedProtocol } from './protocol.js';
import { DEFAULT_BACKOFF, DEFAULT_MAX_PAYLOAD_BYTES, resilientSocket, type BackoffOptions, type QueueLimits } from './ws-client.js';
import { DEFAULT_MAX_LINE_BYTES } from '../line-reader.js';

/** How many recent trade ids to remember per feed: minutes of trades on a busy pair. */
const RECENT_IDS = 100_000;

/** Insertion-ordered set that forgets its oldest entries beyond a size. */
export class RecentSet {
  private readonly items = new Set<string>();
  constructor(private readonly capacity: number) {}
  /** Adds; returns false if it was already there. */
  add(key: string): boolean {
    if (this.items.has(key)) return false;
    this.items.add(key);
    if (this.items.size > this.capacity) this.items.delete(this.items.values().next().value as string);
    return true;
  }
}

export interface FeedSourceOptions {
  clock: Clock;
  logger: Logger;
  connectTimeoutMs?: number;
  backoff?: BackoffOptions;
  /** Override the protocol's liveness timings (tests). */
  staleAfterMs?: number;
  pingAfterMs?: number;
  maxConnectionAgeMs?: number;
  random?: () => number;
  /** When the socket pauses for a consumer that is behind (ws-client.ts DEFAULT_QUEUE_LIMITS otherwise). */
  queue?: Partial<QueueLimits>;
  /** Frames longer than this are rejected as malformed (default 1 MiB, `--max-line`). */
  maxFrameBytes?: number;
}

export class FeedSource implements Source {
  readonly bounded = false;
  readonly name: string;
  gaps = 0;
  duplicates = 0;

  constructor(private readonly protocol: FeedProtocol, private readonly options: FeedSourceOptions) {
    this.name = protocol.exchange;
  }

  async *events(signal: AbortSignal): AsyncGenerator<SourceEvent> {
    const p = this.protocol;
    const o = this.options;
    const seen = new RecentSet(RECENT_IDS);
    const lastSequence = new Map<string, number>();
    const staleAfterMs = o.staleAfterMs ?? p.staleAfterMs;
    const maxFrameBytes = o.maxFrameBytes ?? DEFAULT_MAX_LINE_BYTES;
    const socket = resilientSocket(
      {
        url: p.url, name: p.exchange, subscribeMessages: () => p.subscribeMessages(), appPing: p.appPing, heartbeatChannel: p.heartbeatChannel,
        pingAfterMs: o.pingAfterMs ?? Math.min(20_000, staleAfterMs / 2), staleAfterMs,
        connectTimeoutMs: o.connectTimeoutMs ?? 8000, maxConnectionAgeMs: o.maxConnectionAgeMs ?? p.maxConnectionAgeMs,
        backoff: o.backoff ?? DEFAULT_BACKOFF, clock: o.clock, logger: o.logger, random: o.random, queue: o.queue,
        maxPayloadBytes: Math.max(DEFAULT_MAX_PAYLOAD_BYTES, 4 * maxFrameBytes),
      },
      signal,
    );
    for await (const ev of socket) {
      if (ev.kind === 'open') {
        feedConnects.inc({ feed: this.name });
        yield { kind: 'connected', source: this.name, url: ev.url, at: ev.at };
        continue;
      }
      if (ev.kind === 'close') {
        feedDisconnects.inc({ feed: this.name, cause: disconnectCause(ev.reason) });
        if (ev.fatal) throw new CoinstreamError('UNAUTHORIZED', `${this.name}: ${ev.reason}${p.authHint ? `; ${p.authHint}` : ''}`);
        yield { kind: 'disconnected', source: this.name, reason: ev.reason, retryInMs: ev.retryInMs, at: ev.at };
        continue;
      }
      // A frame is one message, like a replay line: over the limit it is rejected, and the feed goes on.
      // (Characters are at most bytes, so most frames skip the byte count.)
      if (ev.data.length > maxFrameBytes / 3 && Buffer.byteLength(ev.data) > maxFrameBytes) {
        const detail = `frame longer than the limit of ${maxFrameBytes} bytes (${Buffer.byteLength(ev.data)} bytes; --max-line raises it)`;
        yield { kind: 'rejected', rejected: { receivedAt: ev.at, source: this.name, reason: 'malformed', detail, raw: capRaw(ev.data) } };
        continue;
      }
      const trades: Trade[] = [];
      for (const m of p.parse(ev.data, ev.at)) {
        switch (m.kind) {
          case 'trade': {
            const id = m.trade.tradeId;
            if (id !== undefined && !seen.add(`${m.symbol}\u0000${id}`)) {
              this.duplicates++;
              feedDuplicates.inc({ feed: this.name });
              yield { kind: 'rejected', rejected: { receivedAt: ev.at, source: this.name, reason: 'duplicate', detail: `${m.symbol} trade ${id} was already received (re-sent after a reconnect?)`, raw: capRaw(ev.data) } };
              break;
            }
            const gap = m.sequence === undefined ? null : this.gapBefore(lastSequence, m.symbol, m.sequence, true, ev.at);
            if (gap) yield gap;
            trades.push(m.trade);
            break;
          }
          case 'rejected': {
            const gap = m.symbol === undefined || m.sequence === undefined ? null : this.gapBefore(lastSequence, m.symbol, m.sequence, true, ev.at);
            if (gap) yield gap;
            yield { kind: 'rejected', rejected: { receivedAt: ev.at, source: this.name, reason: m.reason, detail: m.detail, raw: capRaw(ev.data) } };
            break;
          }
          case 'sequence': {
            const gap = this.gapBefore(lastSequence, m.symbol, m.sequence, false, ev.at);
            if (gap) yield gap;
            break;
          }
          case 'error':
            if (m.fatal) throw new CoinstreamError('UNAUTHORIZED', m.message);
            o.logger.warn({ feed: this.name, message: m.message }, `${this.name} reported an error`);
            break;
          case 'price':
            yield { kind: 'price', source: this.name, asset: m.asset, priceUsd: m.priceUsd, at: ev.at };
            break;
          case 'heartbeat':
          case 'ignore':
            break;
        }
      }
      if (trades.length > 0) yield { kind: 'trades', source: this.name, trades, origins: frameOrigins(ev.data) };
    }
  }

  /**
   * The gap before `sequence`, if ids were skipped since the last one of `symbol` (`lastSequence`,
   * the feed's run's own). A `sequence` message's id (counted: false) is a trade we do not count:
   * missed, too, if it is new to us.
   */
  private gapBefore(lastSequence: Map<string, number>, symbol: string, sequence: number, counted: boolean, at: number): SourceEvent | null {
    if (!this.protocol.sequentialIds) return null;
    const last = lastSequence.get(symbol);
    if (last === undefined || sequence > last) lastSequence.set(symbol, sequence);
    const next = counted ? sequence : sequence + 1;
    if (last === undefined || next <= last + 1) return null;
    this.gaps++;
    feedGaps.inc({ feed: this.name, symbol });
    return { kind: 'gap', source: this.name, symbol, expected: String(last + 1), received: String(next), at };
  }
}

/** Every trade of a frame came in as that frame; a live feed has no position to name. */
function frameOrigins(frame: string): TradeOrigins {
  return { raw: () => frame, where: () => undefined };
}
