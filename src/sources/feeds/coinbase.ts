// Coinbase Exchange: wss://ws-feed.exchange.coinbase.com, channels `matches` and `heartbeat`.
// A match's `side` is the MAKER's order side: a "sell" maker means the taker bought, so it is inverted.
// `trade_id` is sequential per product. The heartbeat channel ticks every second per product: a quiet
// market still heartbeats, a dead socket does not.
import { normalise, isoToMs } from './normalise.js';
import { parseObject, type FeedMessage, type FeedProtocol } from './protocol.js';

export const COINBASE_DEFAULT_PRODUCTS = ['BTC-USD', 'ETH-USD'];

export function coinbase(products: string[] = COINBASE_DEFAULT_PRODUCTS, url?: string): FeedProtocol {
  return {
    exchange: 'coinbase',
    url: url ?? 'wss://ws-feed.exchange.coinbase.com',
    subscribeMessages: () => [JSON.stringify({ type: 'subscribe', product_ids: products, channels: ['matches', 'heartbeat'] })],
    staleAfterMs: 10_000,
    heartbeatChannel: true,
    sequentialIds: true,
    parse(frame, receivedAt): FeedMessage[] {
      const parsed = parseObject(frame);
      if (!parsed.ok) return parsed.messages;
      const m = parsed.value;
      switch (m.type) {
        case 'last_match': {
          // Sent on subscribing: the product's newest match, made before this connection. Counting it
          // counted a trade twice when a run restarted (the run before had it as a match); it only
          // says where the trade ids go on from.
          const product = String(m.product_id ?? '');
          if (typeof m.trade_id !== 'number') return [{ kind: 'ignore' }];
          return [{ kind: 'sequence', symbol: product, sequence: m.trade_id }];
        }
        case 'match': {
          const product = String(m.product_id ?? '');
          const [base, quote] = product.split('-');
          const makerSide = m.side;
          return [normalise({
            exchange: 'coinbase', symbol: product, baseSymbol: base ?? '', quoteSymbol: quote ?? '',
            side: makerSide === 'sell' ? 'buy' : makerSide === 'buy' ? 'sell' : String(makerSide),
            price: m.price, volume: m.size, timestamp: isoToMs(m.time), tradeId: m.trade_id as number,
            sequence: typeof m.trade_id === 'number' ? m.trade_id : undefined, receivedAt,
          })];
        }
        case 'heartbeat':
          return [{ kind: 'heartbeat' }];
        case 'subscriptions':
          return [{ kind: 'ignore' }];
        case 'error':
          return [{ kind: 'error', message: `coinbase: ${String(m.message)}${m.reason ? ` (${String(m.reason)})` : ''}`, fatal: false }];
        default:
          return [{ kind: 'ignore' }];
      }
    },
  };
}
