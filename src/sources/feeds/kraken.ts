// Kraken WebSocket v2: wss://ws.kraken.com/v2, {"method":"subscribe","params":{"channel":"trade","symbol":[…]}}.
// Frame: {"channel":"trade","type":"update"|"snapshot","data":[{"symbol":"BTC/USD","side":"buy","price":…,
// "qty":…,"ord_type":"market","trade_id":…,"timestamp":"…Z"}]}. `side` is the taker's. `trade_id` is
// sequential per pair. Kraken sends {"channel":"heartbeat"} every second when nothing else is sent.
// Errors: {"method":"subscribe","success":false,"error":"…"}, or a bare {"error":"…"} for a request it could not read.
import { normalise, isoToMs } from './normalise.js';
import { isObject, parseObject, type FeedMessage, type FeedProtocol } from './protocol.js';

export const KRAKEN_DEFAULT_PAIRS = ['BTC/USD', 'ETH/USD'];

export function kraken(pairs: string[] = KRAKEN_DEFAULT_PAIRS, url?: string): FeedProtocol {
  return {
    exchange: 'kraken',
    url: url ?? 'wss://ws.kraken.com/v2',
    // snapshot: false — the last 50 trades on every reconnect would be duplicates at best.
    subscribeMessages: () => [JSON.stringify({ method: 'subscribe', params: { channel: 'trade', symbol: pairs, snapshot: false } })],
    staleAfterMs: 10_000,
    heartbeatChannel: true,
    sequentialIds: true,
    parse(frame, receivedAt): FeedMessage[] {
      const parsed = parseObject(frame);
      if (!parsed.ok) return parsed.messages;
      const m = parsed.value;
      if (m.success === false || (m.error !== undefined && m.error !== null && m.channel === undefined)) {
        const text = m.error === undefined || m.error === '' ? 'request failed' : typeof m.error === 'string' ? m.error : JSON.stringify(m.error);
        return [{ kind: 'error', message: `kraken: ${text}`, fatal: false }];
      }
      if (m.method !== undefined) return [{ kind: 'ignore' }]; // subscribe ack, pong
      if (m.channel === 'heartbeat') return [{ kind: 'heartbeat' }];
      if (m.channel !== 'trade') return [{ kind: 'ignore' }]; // status, …
      if (!Array.isArray(m.data)) return [{ kind: 'rejected', reason: 'malformed', detail: 'kraken trade message without a data array' }];
      return m.data.map((t): FeedMessage => {
        if (!isObject(t)) return { kind: 'rejected', reason: 'malformed', detail: 'kraken trade entry is not an object' };
        const symbol = String(t.symbol ?? '');
        const [base, quote] = symbol.split('/');
        return normalise({
          exchange: 'kraken', symbol, baseSymbol: base ?? '', quoteSymbol: quote ?? '', side: String(t.side),
          price: t.price, volume: t.qty, timestamp: isoToMs(t.timestamp), tradeId: t.trade_id as number,
          sequence: typeof t.trade_id === 'number' ? t.trade_id : undefined, receivedAt,
        });
      });
    },
  };
}
