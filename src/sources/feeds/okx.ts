// OKX v5 public: wss://ws.okx.com:8443/ws/v5/public, {"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"}]}.
// Frame: {"arg":{…},"data":[{"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12","side":"buy","ts":"1630048897897"}]}.
// `side` is the taker's; tradeId is not guaranteed gap-free across aggregated trades. OKX closes a
// connection silent for 30 s: we send the text "ping" and it answers "pong".
import { normalise } from './normalise.js';
import { isObject, parseObject, type FeedMessage, type FeedProtocol } from './protocol.js';

export const OKX_DEFAULT_INSTRUMENTS = ['BTC-USDT', 'ETH-USDT'];

export function okx(instruments: string[] = OKX_DEFAULT_INSTRUMENTS, url?: string): FeedProtocol {
  return {
    exchange: 'okx',
    url: url ?? 'wss://ws.okx.com:8443/ws/v5/public',
    subscribeMessages: () => [JSON.stringify({ op: 'subscribe', args: instruments.map((instId) => ({ channel: 'trades', instId })) })],
    appPing: 'ping',
    staleAfterMs: 45_000,
    sequentialIds: false,
    parse(frame, receivedAt): FeedMessage[] {
      if (frame === 'pong') return [{ kind: 'heartbeat' }];
      const parsed = parseObject(frame);
      if (!parsed.ok) return parsed.messages;
      const m = parsed.value;
      if (m.event === 'error') return [{ kind: 'error', message: `okx: ${String(m.msg)} (code ${String(m.code)})`, fatal: false }];
      if (m.event !== undefined) return [{ kind: 'ignore' }];
      if (!isObject(m.arg) || m.arg.channel !== 'trades') return [{ kind: 'ignore' }];
      if (!Array.isArray(m.data)) return [{ kind: 'rejected', reason: 'malformed', detail: 'okx trades message without a data array' }];
      return m.data.map((t): FeedMessage => {
        if (!isObject(t)) return { kind: 'rejected', reason: 'malformed', detail: 'okx trade entry is not an object' };
        const symbol = String(t.instId ?? '');
        const [base, quote] = symbol.split('-');
        return normalise({ exchange: 'okx', symbol, baseSymbol: base ?? '', quoteSymbol: quote ?? '', side: String(t.side), price: t.px, volume: t.sz, timestamp: Number(t.ts), tradeId: t.tradeId as string, receivedAt });
      });
    },
  };
}
