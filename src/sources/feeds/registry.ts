// Feed kinds by name, and the SOURCE SPEC grammar for them: kind[:SYMBOLS][@URL].
import type { Clock } from '../../core/clock.js';
import { UsageError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Source } from '../contract.js';
import { binance } from './binance.js';
import { bybit } from './bybit.js';
import { coinbase } from './coinbase.js';
import { coincap, coincapPrices } from './coincap.js';
import { FeedSource, type FeedSourceOptions } from './feed-source.js';
import { kraken } from './kraken.js';
import { okx } from './okx.js';
import type { FeedProtocol } from './protocol.js';

export const FEED_KINDS = ['coincap', 'coincap-prices', 'binance', 'coinbase', 'kraken', 'bybit', 'okx'] as const;
export type FeedKind = (typeof FEED_KINDS)[number];


export function isFeedKind(kind: string): kind is FeedKind {
  return (FEED_KINDS as readonly string[]).includes(kind);
}

export function feedProtocol(kind: FeedKind, symbols: string[] | undefined, url: string | undefined, env: NodeJS.ProcessEnv = process.env): FeedProtocol {
  switch (kind) {
    case 'coincap':
      return coincap(symbols, url);
    case 'coincap-prices':
      if (!symbols || symbols.length === 0) throw new UsageError('coincap-prices needs assets: --source coincap-prices:bitcoin,ethereum');
      return coincapPrices(symbols, env.COINCAP_API_KEY, url);
    case 'binance':
      return binance(symbols, url);
    case 'coinbase':
      return coinbase(symbols, url);
    case 'kraken':
      return kraken(symbols, url);
    case 'bybit':
      return bybit(symbols, url);
    case 'okx':
      return okx(symbols, url);
  }
}

export function createFeedSource(kind: FeedKind, symbols: string[] | undefined, url: string | undefined, deps: { clock: Clock; logger: Logger } & Partial<FeedSourceOptions>): Source {
  return new FeedSource(feedProtocol(kind, symbols, url), deps);
}

/** Parses `kind[:SYMBOLS][@URL]`: `binance:btcusdt,ethusdt`, `coincap@ws://127.0.0.1:9000/trades/binance`. */
export function parseFeedSpec(spec: string): { kind: FeedKind; symbols: string[] | undefined; url: string | undefined } | null {
  const at = spec.indexOf('@');
  const head = at === -1 ? spec : spec.slice(0, at);
  const url = at === -1 ? undefined : spec.slice(at + 1);
  const colon = head.indexOf(':');
  const kind = colon === -1 ? head : head.slice(0, colon);
  if (!isFeedKind(kind)) return null;
  const symbols = colon === -1 ? undefined : head.slice(colon + 1).split(',').map((s) => s.trim()).filter(Boolean);
  if (url !== undefined && !/^wss?:\/\/[^/]+/.test(url)) throw new UsageError(`${spec}: the address after @ must be a ws:// or wss:// URL`);
  return { kind, symbols: symbols && symbols.length > 0 ? symbols : undefined, url };
}
