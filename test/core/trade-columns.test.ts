// A replay's trades travel as columns (TradeColumns) instead of objects. Whatever way they go, the
// trades must come out the same: as objects (at, iteration, slices) and in the sinks' batch
// (TradeBatchBuilder.pushColumns against push, which takes objects).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeyTable, TradeColumns } from '../../src/core/trade-columns.js';
import type { Trade } from '../../src/core/trade.js';
import { TradeBatchBuilder, type TradeBatch } from '../../src/sinks/trade-batch.js';

const trade = fc.record(
  {
    exchange: fc.constantFrom('kraken', 'binance'),
    base: fc.constantFrom('bitcoin', 'ethereum', 'solana', 'cardano', 'dogecoin'),
    quote: fc.constantFrom('tether', 'united-states-dollar'),
    direction: fc.constantFrom('buy' as const, 'sell' as const),
    price: fc.double({ min: 1e-6, max: 1e6, noNaN: true }),
    volume: fc.double({ min: 1e-6, max: 1e6, noNaN: true }),
    timestamp: fc.integer({ min: 1_500_000_000_000, max: 1_800_000_000_000 }),
    priceUsd: fc.double({ min: 1e-6, max: 1e6, noNaN: true }),
    tradeId: fc.string({ maxLength: 6 }),
    receivedAt: fc.integer({ min: 1_500_000_000_000, max: 1_800_000_000_000 }),
  },
  { requiredKeys: ['exchange', 'base', 'quote', 'direction', 'price', 'volume', 'timestamp', 'priceUsd'] },
);

/** A batch as plain values: keys by name (ids differ between builders), every column. */
function view(b: TradeBatch): unknown[] {
  return Array.from({ length: b.length }, (_, i) => {
    const k = b.keys[b.key[i]];
    return [k.exchange, k.base, k.quote, k.direction, b.price[i], b.volume[i], b.timestamp[i], b.priceUsd[i], b.receivedAt[i], b.tradeId?.[i] ?? null];
  });
}

function columnsOf(trades: Trade[], keys: KeyTable): TradeColumns {
  const c = new TradeColumns(keys.keys, 1); // grows while appending
  for (const t of trades) c.appendTrade(t, keys);
  return c;
}

describe('TradeColumns', () => {
  it('gives back the trades appended, as objects, whole and in slices', () => {
    fc.assert(
      fc.property(fc.array(trade, { maxLength: 40 }), fc.nat(), fc.nat(), (trades, a, b) => {
        const c = columnsOf(trades, new KeyTable());
        expect(c.length).toBe(trades.length);
        expect([...c]).toEqual(trades);
        const [from, to] = [a % (trades.length + 1), b % (trades.length + 1)].sort((x, y) => x - y);
        expect([...c.slice(from, to)]).toEqual(trades.slice(from, to));
        expect(c.map((t, i) => `${i}:${t.base}`)).toEqual(trades.map((t, i) => `${i}:${t.base}`));
      }),
    );
  });

  it('goes into the sinks\' batch exactly as the same trades as objects, across batches and key tables', () => {
    fc.assert(
      fc.property(fc.array(fc.array(trade, { maxLength: 30 }), { maxLength: 5 }), fc.double({ min: 0, max: 2e12, noNaN: true }), (events, receivedAt) => {
        const byObjects = new TradeBatchBuilder(64);
        const byColumns = new TradeBatchBuilder(64);
        // Two producers with their own key tables, as two parse threads have.
        const tables = [new KeyTable(), new KeyTable()];
        const wanted: unknown[][] = [];
        const got: unknown[][] = [];
        events.forEach((trades, e) => {
          for (const t of trades) byObjects.push(t, receivedAt);
          const c = columnsOf(trades, tables[e % 2]);
          // In two runs, as the pipeline copies around a late trade.
          const cut = Math.floor(trades.length / 2);
          byColumns.pushColumns(c, 0, cut, receivedAt);
          byColumns.pushColumns(c, cut, trades.length, receivedAt);
          // A batch is taken after every other event: the next one goes on with the same key ids.
          if (e % 2 === 1) {
            wanted.push(view(byObjects.take()));
            got.push(view(byColumns.take()));
          }
        });
        wanted.push(view(byObjects.take()));
        got.push(view(byColumns.take()));
        expect(got).toEqual(wanted);
      }),
    );
  });

  it('keeps a key\'s id from batch to batch, and a batch lists only the keys seen before it was taken', () => {
    const builder = new TradeBatchBuilder(8);
    const keys = new KeyTable();
    const of = (base: string, direction: 'buy' | 'sell'): Trade => ({ exchange: 'kraken', base, quote: 'usd', direction, price: 1, volume: 1, timestamp: 1_600_000_000_000, priceUsd: 1 });
    builder.pushColumns(columnsOf([of('bitcoin', 'buy'), of('ethereum', 'sell')], keys), 0, 2);
    const first = builder.take();
    // The second batch meets ethereum first: its id is still the one the first batch gave it.
    builder.pushColumns(columnsOf([of('ethereum', 'sell'), of('solana', 'buy'), of('bitcoin', 'buy')], keys), 0, 3);
    const second = builder.take();
    builder.push(of('cardano', 'sell'));
    expect([...first.key.subarray(0, first.length)]).toEqual([0, 1]);
    expect([...second.key.subarray(0, second.length)]).toEqual([1, 2, 0]);
    expect(first.keys.map((k) => k.base)).toEqual(['bitcoin', 'ethereum']);
    expect(second.keys.map((k) => k.base)).toEqual(['bitcoin', 'ethereum', 'solana']);
    expect(builder.take().keys.map((k) => k.base)).toEqual(['bitcoin', 'ethereum', 'solana', 'cardano']);
  });
});
