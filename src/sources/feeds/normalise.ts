// The one way a connector turns exchange fields into a trade message: CoinCap ids, taker side, event
// time, priceUsd = price for US-dollar quotes, and the same validation as every other input.
import { validateTrade } from '../../core/parse-trade.js';
import type { Direction } from '../../core/trade.js';
import { coincapId, isUsdQuote } from './assets.js';
import { decimal, type FeedMessage } from './protocol.js';

export interface RawTrade {
  exchange: string;
  /** The exchange's own symbol, for de-duplication and gaps (`BTCUSDT`, `BTC-USD`). */
  symbol: string;
  baseSymbol: string;
  quoteSymbol: string;
  /** Taker side. */
  side: Direction | string;
  price: unknown;
  volume: unknown;
  /** Event time, epoch ms. */
  timestamp: number;
  tradeId?: string | number;
  /** Sequential id for gap detection, where the exchange has one. */
  sequence?: number;
  receivedAt: number;
}

export function normalise(raw: RawTrade): FeedMessage {
  const quote = coincapId(raw.quoteSymbol);
  const price = decimal(raw.price);
  // A rejected trade keeps its sequence: it arrived, so the next id is no gap.
  const arrived = { symbol: raw.symbol, sequence: raw.sequence };
  if (!isUsdQuote(quote)) {
    return { kind: 'rejected', reason: 'invalid', detail: `${raw.exchange} ${raw.symbol}: quote ${raw.quoteSymbol || '?'} is not US dollars or a USD stablecoin, so priceUsd is unknown; subscribe to a USD pair`, ...arrived };
  }
  const side = typeof raw.side === 'string' ? raw.side.toLowerCase() : raw.side;
  const checked = validateTrade({
    exchange: raw.exchange,
    base: coincapId(raw.baseSymbol),
    quote,
    direction: side,
    price,
    volume: decimal(raw.volume),
    timestamp: raw.timestamp,
    priceUsd: price,
    tradeId: raw.tradeId === undefined ? undefined : String(raw.tradeId),
    receivedAt: raw.receivedAt,
  });
  if (!checked.ok) return { kind: 'rejected', reason: 'invalid', detail: `${raw.exchange} ${raw.symbol}: ${checked.detail}`, ...arrived };
  return { kind: 'trade', trade: checked.trade, symbol: raw.symbol, sequence: raw.sequence };
}

/** ISO-8601 text to epoch ms (microseconds are cut, as the trade message carries ms). */
export function isoToMs(value: unknown): number {
  if (typeof value !== 'string') return NaN;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : NaN;
}
