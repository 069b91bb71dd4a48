// What each exchange connector is: a pure description of its protocol. It opens no socket; the
// resilient client (ws-client.ts) and the feed source (feed-source.ts) do that for every exchange alike,
// so each connector's test is a golden test of parse() on real or documented frames.
import type { Trade } from '../../core/trade.js';

export type FeedMessage =
  /** A trade; `symbol` and `sequence` feed de-duplication and gap detection. */
  | { kind: 'trade'; trade: Trade; symbol: string; sequence?: number }
  /** A message that proves the channel is alive (exchange heartbeat, pong). */
  | { kind: 'heartbeat' }
  /** Subscription acks, status messages: expected, nothing to do. */
  | { kind: 'ignore' }
  /**
   * A frame or an entry we could not use: kept in rejected_trades. A trade rejected for its values
   * still names its sequence where it could be read: it arrived, so its id is no gap.
   */
  | { kind: 'rejected'; reason: 'malformed' | 'invalid'; detail: string; symbol?: string; sequence?: number }
  /**
   * The exchange's newest trade id for a symbol, told on subscribing (Coinbase's last_match): a trade
   * that happened before this connection, so not one we count (a restarted run had it already), but
   * where the ids go on from, so that trades missed while we were away show as a gap.
   */
  | { kind: 'sequence'; symbol: string; sequence: number }
  /** The exchange said something went wrong; `fatal` stops retrying (bad credentials, bad symbol). */
  | { kind: 'error'; message: string; fatal: boolean }
  /** A price quote (CoinCap prices), never a trade. */
  | { kind: 'price'; asset: string; priceUsd: number };

export interface FeedProtocol {
  /** Exchange id as in the trade message (`binance`). */
  readonly exchange: string;
  /** Where to connect. */
  readonly url: string;
  /** Sent after every (re)connect. */
  subscribeMessages(): string[];
  /** One websocket text frame to messages (a frame can carry several trades). */
  parse(frame: string, receivedAt: number): FeedMessage[];
  /** Application-level ping to send (OKX "ping", Bybit {"op":"ping"}); else websocket ping frames. */
  readonly appPing?: string;
  /**
   * The exchange has a heartbeat channel (Coinbase, Kraken): only its messages prove the channel is
   * alive, so we neither ping nor count websocket pongs, which a server can answer for a dead feed.
   */
  readonly heartbeatChannel?: boolean;
  /**
   * Longest silence that is still a quiet market: the exchange's heartbeat period plus margin where it
   * has a heartbeat channel, else our ping period plus the pong timeout.
   */
  readonly staleAfterMs: number;
  /** Reconnect before the server's hard connection limit (Binance: 24 h). */
  readonly maxConnectionAgeMs?: number;
  /** What to tell the user when the server refuses our credentials (HTTP 401). */
  readonly authHint?: string;
  /** Whether trade ids are sequential per symbol, so a jump is a gap. */
  readonly sequentialIds: boolean;
}

/** Numbers arrive as strings on most exchanges: parse strictly, NaN when not a plain decimal. */
export function decimal(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string' || !/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(value)) return NaN;
  return Number(value);
}

export function parseJson(frame: string): { ok: true; value: unknown } | { ok: false; detail: string } {
  try {
    return { ok: true, value: JSON.parse(frame) };
  } catch (err) {
    return { ok: false, detail: `not JSON: ${(err as Error).message}` };
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The JSON object in a frame, or the rejection to emit when the frame is not one. */
export function parseObject(frame: string): { ok: true; value: Record<string, unknown> } | { ok: false; messages: FeedMessage[] } {
  const json = parseJson(frame);
  if (!json.ok) return { ok: false, messages: [{ kind: 'rejected', reason: 'malformed', detail: json.detail }] };
  if (!isObject(json.value)) return { ok: false, messages: [{ kind: 'rejected', reason: 'malformed', detail: 'not a JSON object' }] };
  return { ok: true, value: json.value };
}
