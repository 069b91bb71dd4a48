import { describe, expect, it } from 'vitest';
import { parseTrade, validateTrade } from '../../src/core/parse-trade.js';
import { tradeToJson, type Trade } from '../../src/core/trade.js';

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

  it('rejects bytes that are not UTF-8 as malformed, where decoding would have made them U+FFFD, and keeps a real U+FFFD', () => {
    const [before, after] = line({ base: 'bitXcoin' }).split('X');
    const broken = Buffer.concat([Buffer.from(before), Buffer.from([0xff]), Buffer.from(after)]);
    expect(parseTrade(broken)).toEqual({ ok: false, reason: 'malformed', detail: expect.stringMatching(/^not UTF-8/) });
    // A truncated sequence (the first two bytes of a three-byte character) too.
    const truncated = Buffer.concat([Buffer.from(before), Buffer.from([0xe2, 0x82]), Buffer.from(after)]);
    expect(parseTrade(truncated)).toMatchObject({ ok: false, reason: 'malformed' });
    // U+FFFD itself is UTF-8 (EF BF BD), and so is any other character: the bytes are the text.
    expect(parseTrade(Buffer.from(line({ base: 'bit\uFFFDcoin' })))).toMatchObject({ ok: true, trade: { base: 'bit\uFFFDcoin' } });
    expect(parseTrade(Buffer.from(line({ base: 'bitcoin €' })))).toMatchObject({ ok: true, trade: { base: 'bitcoin €' } });
  });

  it.each([
    ['{"exchange":"binance",', 'malformed', /not JSON/],
    ['[1,2,3]', 'malformed', /not a JSON object/],
    ['"a string"', 'malformed', /not a JSON object/],
    ['null', 'malformed', /not a JSON object/],
    [line({ price: '36.59' }), 'invalid', /price must be a finite number, got "36.59"/],
    [line({ volume: 0 }), 'invalid', /volume must be a number > 0/],
    [line({ price: -36.59 }), 'invalid', /^price must be > 0, got -36\.59$/],
    [line({ price: 0 }), 'invalid', /^price must be > 0, got 0$/],
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
    // Only a JSON escape puts a control character in an id; PostgreSQL cannot store NUL (the same asset
    // had different keys per store).
    [line({ base: 'nul\u0000asset' }), 'invalid', /^base contains the control character U\+0000, got "nul\\u0000asset"$/],
    [line({ exchange: 'bin\tance' }), 'invalid', /^exchange contains the control character U\+0009/],
    [line({ quote: 'tether\u007f' }), 'invalid', /^quote contains the control character U\+007F/],
    [line({ tradeId: 'id\n7' }), 'invalid', /^tradeId contains the control character U\+000A/],
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

  it('judges a line nested 100,000 deep without recursing (it used to overflow the stack)', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    expect(parseTrade(deep)).toMatchObject({ ok: false, reason: 'malformed', detail: 'not a JSON object: got an array' });
    const deepField = line({ direction: 'x' }).replace('"direction":"x"', `"direction":${deep}`);
    expect(parseTrade(deepField)).toMatchObject({ ok: false, reason: 'invalid', detail: 'direction must be "buy" or "sell", got an array' });
    // A valid trade may carry a deep extra field; its message text leaves it out instead of overflowing.
    const r = parseTrade(line({}).replace('{', `{"extra":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)},`));
    expect(r.ok).toBe(true);
    if (r.ok) expect(JSON.parse(tradeToJson(r.trade))).toEqual(good);
  });

  it.each([
    [{ priceUsd: 1e308, volume: 1e308 }, /volume 1e\+308 is outside 1e-50\.\.1e\+50: window sums of it would overflow/],
    [{ priceUsd: 1e308 }, /priceUsd 1e\+308 is outside/],
    [{ priceUsd: 5e-324 }, /priceUsd 5e-324 is outside 1e-50\.\.1e\+50: window sums of it would lose their precision/],
    [{ volume: 1e-60 }, /volume 1e-60 is outside/],
  ])('rejects values whose window sums would overflow or lose meaning: %j', (over, detail) => {
    expect(parseTrade(line(over))).toMatchObject({ ok: false, reason: 'invalid', detail: expect.stringMatching(detail) });
  });

  it.each(['base', 'exchange', 'quote', 'tradeId'])('rejects a %s longer than 200 characters (every store must hold every accepted trade)', (field) => {
    expect(parseTrade(line({ [field]: 'x'.repeat(200) })).ok).toBe(true);
    expect(parseTrade(line({ [field]: 'x'.repeat(201) }))).toMatchObject({ ok: false, reason: 'invalid', detail: expect.stringMatching(new RegExp(`^${field} is 201 characters long, more than 200`)) });
  });

  it('accepts the extremes of real markets (a 1e-10 USD token, a 1e12-unit trade)', () => {
    expect(parseTrade(line({ priceUsd: 1e-10, price: 1e-10, volume: 1e12 })).ok).toBe(true);
  });

  it.each([
    [1666422331, /timestamp 1666422331 is 1970-01-20T06:53:42.331Z, before 2009-01-03.*\(seconds, not milliseconds\?\)/],
    [1666422331415000, /more than a day after it was received.*\(microseconds, not milliseconds\?\)/],
    [1666422331415000000, /timestamp must be an integer/], // beyond 2^53: not an exact integer at all
    [8.6e15, /^timestamp 8600000000000000 is \+274493-02-24T00:53:20\.000Z, more than a day after it was received$/],
    [0, /before 2009-01-03/],
  ])('rejects the implausible event time %d and says what it looks like', (timestamp, detail) => {
    const receivedAt = 1666422331415 + 1000;
    expect(parseTrade(line({ timestamp }), receivedAt)).toMatchObject({ ok: false, reason: 'invalid', detail: expect.stringMatching(detail) });
  });

  it('bounds event times by the receive time plus a day, not by today', () => {
    const at = good.timestamp;
    expect(validateTrade({ ...good }, at - 86_400_000).ok).toBe(true);
    expect(validateTrade({ ...good }, at - 86_400_001).ok).toBe(false);
  });

  it('writes the message text field by field, in CoinCap order, with the optional fields', () => {
    const trade: Trade = { ...good, direction: 'buy', tradeId: 'a"b', receivedAt: 5 };
    expect(tradeToJson(trade)).toBe(JSON.stringify({ ...good, tradeId: 'a"b', receivedAt: 5 }));
  });
});

