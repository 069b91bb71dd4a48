// Bybit v5 public spot: wss://stream.bybit.com/v5/public/spot, {"op":"subscribe","args":["publicTrade.BTCUSDT"]}.
// Frame: {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":…,"data":[{"T":…,"s":"BTCUSDT","S":"Buy",
// "v":"0.001","p":"16578.50","i":"<uuid>",…}]}. `S` is the taker side; ids are not sequential.
// Bybit wants {"op":"ping"} every 20 s and answers with a pong. A refused request: {"success":false,"ret_msg":"…"}
// (with "op" when it could tell which request, without when it could not read it).
import { splitGluedSymbol } from './assets.js';
import { normalise } from './normalise.js';
import { isObject, parseObject, type FeedMessage, type FeedProtocol } from './protocol.js';

export const BYBIT_DEFAULT_SYMBOLS = ['BTCUSDT', 'ETHUSDT'];

export function bybit(symbols: string[] = BYBIT_DEFAULT_SYMBOLS, url?: string): FeedProtocol {
  return {
    exchange: 'bybit',
    url: url ?? 'wss://stream.bybit.com/v5/public/spot',
    subscribeMessages: () => [JSON.stringify({ op: 'subscribe', args: symbols.map((s) => `publicTrade.${s.toUpperCase()}`) })],
    appPing: JSON.stringify({ op: 'ping' }),
    staleAfterMs: 45_000,
    sequentialIds: false,
    parse(frame, receivedAt): FeedMessage[] {
      const parsed = parseObject(frame);
      if (!parsed.ok) return parsed.messages;
      const m = parsed.value;
      if (m.op === 'pong' || m.ret_msg === 'pong') return [{ kind: 'heartbeat' }];
      if (m.success === false) {
        const text = typeof m.ret_msg === 'string' && m.ret_msg !== '' ? m.ret_msg : 'request failed';
        return [{ kind: 'error', message: `bybit: ${text}`, fatal: false }];
      }
      if (m.op !== undefined) return [{ kind: 'ignore' }];
      if (typeof m.topic !== 'string' || !m.topic.startsWith('publicTrade.')) return [{ kind: 'ignore' }];
      if (!Array.isArray(m.data)) return [{ kind: 'rejected', reason: 'malformed', detail: 'bybit trade message without a data array' }];
      return m.data.map((t): FeedMessage => {
        if (!isObject(t)) return { kind: 'rejected', reason: 'malformed', detail: 'bybit trade entry is not an object' };
        const symbol = String(t.s ?? '');
        const [base, quote] = splitGluedSymbol(symbol);
        return normalise({ exchange: 'bybit', symbol, baseSymbol: base, quoteSymbol: quote, side: String(t.S), price: t.p, volume: t.v, timestamp: Number(t.T), tradeId: t.i as string, receivedAt });
      });
    },
  };
}
