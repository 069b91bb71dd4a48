// Binance spot trade streams, combined: wss://stream.binance.com:9443/stream?streams=btcusdt@trade/...
// Frame: {"stream":"btcusdt@trade","data":{"e":"trade","E":…,"s":"BTCUSDT","t":12345,"p":"…","q":"…","T":…,"m":true,…}}
// `m` = the buyer is the maker, so the taker sold. `t` is sequential per symbol. The server pings
// every 20 s (ws answers pongs by itself) and closes connections after 24 h.
// Errors come as {"code":2,"msg":"…"} or, answering a request, {"id":1,"error":{"code":2,"msg":"…"}}.
import { splitGluedSymbol } from './assets.js';
import { normalise } from './normalise.js';
import { isObject, parseObject, type FeedMessage, type FeedProtocol } from './protocol.js';

export const BINANCE_DEFAULT_SYMBOLS = ['btcusdt', 'ethusdt'];

export function binance(symbols: string[] = BINANCE_DEFAULT_SYMBOLS, url?: string): FeedProtocol {
  const streams = symbols.map((s) => `${s.toLowerCase()}@trade`).join('/');
  return {
    exchange: 'binance',
    // The streams are in the URL, so every reconnect subscribes again by itself. An @URL override
    // names the host (ws://127.0.0.1:9000); one with its own path is used as given.
    url: url && new URL(url).pathname.length > 1 ? url : `${(url ?? 'wss://stream.binance.com:9443').replace(/\/$/, '')}/stream?streams=${streams}`,
    subscribeMessages: () => [],
    staleAfterMs: 60_000,
    maxConnectionAgeMs: 23 * 3_600_000,
    sequentialIds: true,
    parse(frame, receivedAt): FeedMessage[] {
      const parsed = parseObject(frame);
      if (!parsed.ok) return parsed.messages;
      const msg = parsed.value;
      if (isObject(msg.error)) return [binanceError(msg.error)];
      if (msg.data === undefined && msg.e === undefined && 'code' in msg && 'msg' in msg) return [binanceError(msg)];
      if ('result' in msg && 'id' in msg) return [{ kind: 'ignore' }]; // SUBSCRIBE ack
      const d = isObject(msg.data) ? msg.data : msg; // combined stream wraps, raw stream does not
      if (d.e !== 'trade') return [{ kind: 'ignore' }];
      const symbol = String(d.s ?? '');
      const [base, quote] = splitGluedSymbol(symbol);
      return [normalise({
        exchange: 'binance', symbol, baseSymbol: base, quoteSymbol: quote,
        side: d.m === true ? 'sell' : d.m === false ? 'buy' : String(d.m),
        price: d.p, volume: d.q, timestamp: Number(d.T), tradeId: d.t as number, sequence: typeof d.t === 'number' ? d.t : undefined, receivedAt,
      })];
    },
  };
}

/** `binance: Invalid request: unknown variant (code 2)`: what Binance said, and its code. */
function binanceError(e: Record<string, unknown>): FeedMessage {
  const text = typeof e.msg === 'string' && e.msg !== '' ? e.msg : JSON.stringify(e);
  return { kind: 'error', message: `binance: ${text}${e.code !== undefined ? ` (code ${String(e.code)})` : ''}`, fatal: false };
}
