// CoinCap v2 trades: wss://ws.coincap.io/trades/<exchange>; every frame is already one trade message.
// CoinCap shut v2 down on 2025-03-31: this connector serves compatible relays and `coinstream
// replay-server`. CoinCap v3 prices (wss://wss.coincap.io/prices?assets=…&apiKey=…) carry prices, not
// trades: they feed the prices view, never the volume windows.
import { validateTrade } from '../../core/parse-trade.js';
import { isObject, parseJson, decimal, type FeedMessage, type FeedProtocol } from './protocol.js';

export function coincap(assets: string[] | undefined, url?: string): FeedProtocol {
  const only = assets && assets.length > 0 ? new Set(assets) : null;
  return {
    exchange: 'coincap',
    url: url ?? 'wss://ws.coincap.io/trades/binance',
    subscribeMessages: () => [],
    staleAfterMs: 60_000,
    sequentialIds: false,
    parse(frame, receivedAt): FeedMessage[] {
      const json = parseJson(frame);
      if (!json.ok) return [{ kind: 'rejected', reason: 'malformed', detail: json.detail }];
      const checked = validateTrade(json.value);
      if (!checked.ok) return [{ kind: 'rejected', reason: checked.reason, detail: `coincap: ${checked.detail}` }];
      const trade = checked.trade;
      if (only && !only.has(trade.base)) return [{ kind: 'ignore' }];
      trade.receivedAt ??= receivedAt;
      return [{ kind: 'trade', trade, symbol: `${trade.exchange}:${trade.base}/${trade.quote}` }];
    },
  };
}

export function coincapPrices(assets: string[], apiKey: string | undefined, url?: string): FeedProtocol {
  const base = url ?? 'wss://wss.coincap.io/prices';
  const query = new URLSearchParams({ assets: assets.join(',') });
  if (apiKey) query.set('apiKey', apiKey);
  return {
    exchange: 'coincap',
    url: `${base}${base.includes('?') ? '&' : '?'}${query.toString()}`,
    authHint: 'set COINCAP_API_KEY to a valid CoinCap v3 API key (https://pro.coincap.io)',
    subscribeMessages: () => [],
    staleAfterMs: 60_000,
    sequentialIds: false,
    parse(frame): FeedMessage[] {
      if (/unauthori[sz]ed/i.test(frame)) {
        return [{ kind: 'error', message: 'coincap prices: Unauthorized. Set COINCAP_API_KEY to a valid CoinCap v3 API key (https://pro.coincap.io)', fatal: true }];
      }
      const json = parseJson(frame);
      if (!json.ok) return [{ kind: 'rejected', reason: 'malformed', detail: json.detail }];
      if (!isObject(json.value)) return [{ kind: 'rejected', reason: 'malformed', detail: 'not a JSON object' }];
      return Object.entries(json.value).map(([asset, value]): FeedMessage => {
        const priceUsd = decimal(value);
        return priceUsd > 0 && Number.isFinite(priceUsd)
          ? { kind: 'price', asset, priceUsd }
          : { kind: 'rejected', reason: 'invalid', detail: `coincap prices: ${asset} price ${JSON.stringify(value)} is not a positive number` };
      });
    },
  };
}
