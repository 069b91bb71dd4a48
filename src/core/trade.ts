// The trade message: the one shape every source produces and every later stage reads.
// It is CoinCap's v2 trade shape, so the original Spark job's schema still reads our topic
// (see DESIGN.md, "The trade message").

export type Direction = 'buy' | 'sell';

export interface Trade {
  /** Exchange id, lowercase (`binance`, `kraken`, ...). */
  exchange: string;
  /** CoinCap asset id of the traded asset (`bitcoin`). */
  base: string;
  /** CoinCap asset id of the quote asset (`tether`, `united-states-dollar`). */
  quote: string;
  /** Taker side. */
  direction: Direction;
  /** Price in quote units. */
  price: number;
  /** Amount of base traded. */
  volume: number;
  /** Exchange event time, epoch milliseconds. Never overwritten. */
  timestamp: number;
  /** Price in US dollars. */
  priceUsd: number;
  /** Exchange's trade id, where it has one. */
  tradeId?: string;
  /** When we received it, epoch milliseconds on our clock. Never overwritten. */
  receivedAt?: number;
}

export type RejectReason = 'malformed' | 'invalid' | 'late' | 'duplicate';

/** An input we could not use, kept with the reason (nothing is dropped silently). */
export interface RejectedTrade {
  receivedAt: number;
  /** Which source it came from (`replay:data/x.jsonl`, `binance`). */
  source: string;
  reason: RejectReason;
  /** Human-readable: what was wrong. */
  detail: string;
  /** The raw text, capped at MAX_RAW_CHARS. */
  raw: string;
}

export const MAX_RAW_CHARS = 4096;

export function capRaw(raw: string): string {
  return raw.length <= MAX_RAW_CHARS ? raw : raw.slice(0, MAX_RAW_CHARS) + `…[${raw.length - MAX_RAW_CHARS} more chars]`;
}

/**
 * The JSON text of a trade in the message shape (field order as CoinCap's): the contract's fields
 * only, written out one by one. Extra fields a parsed line carried are left out, and so is any
 * recursion over them (a deeply nested extra field would overflow JSON.stringify's stack).
 */
export function tradeToJson(t: Trade): string {
  let text = `{"exchange":${JSON.stringify(t.exchange)},"base":${JSON.stringify(t.base)},"quote":${JSON.stringify(t.quote)},"direction":"${t.direction}","price":${t.price},"volume":${t.volume},"timestamp":${t.timestamp},"priceUsd":${t.priceUsd}`;
  if (t.tradeId !== undefined) text += `,"tradeId":${JSON.stringify(t.tradeId)}`;
  if (t.receivedAt !== undefined) text += `,"receivedAt":${t.receivedAt}`;
  return text + '}';
}
