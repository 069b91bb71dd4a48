import { describe, expect, it } from 'vitest';
import { parseTrade } from '../../src/core/parse-trade.js';

const good = { exchange: 'binance', base: 'bitcoin', quote: 'tether', direction: 'buy', price: 36.59, volume: 0.901, timestamp: 1666422331415, priceUsd: 36.61 };
const line = (over: Record<string, unknown>) => JSON.stringify({ ...good, ...over });

describe('parseTrade', () => {
  it('accepts the CoinCap trade message and keeps the optional fields', () => {
    const r = parseTrade(line({ tradeId: 12345, receivedAt: 1666422331500 }));
    expect(r).toEqual({ ok: true, trade: { ...good, direction: 'buy', tradeId: '12345', receivedAt: 1666422331500 } });
  });

  it('accepts bytes as well as text', () => {
    expect(parseTrade(Buffer.from(line({}))).ok).toBe(true);
  });

  it.each([
    ['{"exchange":"binance",', 'malformed', /not JSON/],
    ['[1,2,3]', 'malformed', /not a JSON object/],
    ['"a string"', 'malformed', /not a JSON object/],
    ['null', 'malformed', /not a JSON object/],
    [line({ price: '36.59' }), 'invalid', /price must be a finite number, got "36.59"/],
    [line({ volume: 0 }), 'invalid', /volume must be a number > 0/],
    [line({ volume: -1 }), 'invalid', /volume/],
    [line({ priceUsd: 0 }), 'invalid', /priceUsd must be a number > 0/],
    [line({ priceUsd: null }), 'invalid', /priceUsd/],
    [line({ timestamp: 1666422331.5 }), 'invalid', /timestamp must be an integer/],
    [line({ timestamp: '1666422331415' }), 'invalid', /timestamp/],
    [line({ timestamp: -5 }), 'invalid', /timestamp/],
    [line({ direction: 'hold' }), 'invalid', /direction must be "buy" or "sell", got "hold"/],
    [line({ base: '' }), 'invalid', /base must be a non-empty string/],
    [line({ base: undefined }), 'invalid', /base must be a non-empty string, missing/],
    [line({ exchange: 5 }), 'invalid', /exchange must be a string/],
    [line({ tradeId: { a: 1 } }), 'invalid', /tradeId/],
    ['{"price": 1e400}', 'invalid', /base/],
  ])('rejects %s as %s', (text, reason, detail) => {
    const r = parseTrade(text);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).toBe(reason);
      expect(r.detail).toMatch(detail);
    }
  });

  it('rejects a number that JSON turns into Infinity', () => {
    const r = parseTrade(line({}).replace('"price":36.59', '"price":1e400'));
    expect(r).toMatchObject({ ok: false, reason: 'invalid', detail: expect.stringMatching(/price must be a finite number/) });
  });
});
