// Golden tests: each connector's parse() on documented or recorded frames, including the frames that
// must yield no trade (acks, heartbeats, errors, garbage).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { binance } from '../../src/sources/feeds/binance.js';
import { bybit } from '../../src/sources/feeds/bybit.js';
import { coinbase } from '../../src/sources/feeds/coinbase.js';
import { coincap, coincapPrices } from '../../src/sources/feeds/coincap.js';
import { kraken } from '../../src/sources/feeds/kraken.js';
import { okx } from '../../src/sources/feeds/okx.js';
import { parseFeedSpec } from '../../src/sources/feeds/registry.js';
import { coincapId, splitGluedSymbol } from '../../src/sources/feeds/assets.js';

const AT = 1_700_000_000_000; // our receive time

describe('binance', () => {
  const p = binance();
  it('subscribes through the combined-stream URL', () => {
    expect(p.url).toBe('wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade');
    expect(binance(['solusdt'], 'ws://127.0.0.1:9000').url).toBe('ws://127.0.0.1:9000/stream?streams=solusdt@trade');
  });
  it('normalises a trade: m=true means the buyer was the maker, so the taker sold', () => {
    const frame = '{"stream":"btcusdt@trade","data":{"e":"trade","E":1672515782136,"s":"BTCUSDT","t":12345,"p":"16578.50","q":"0.00100000","T":1672515782134,"m":true,"M":true}}';
    expect(p.parse(frame, AT)).toEqual([{ kind: 'trade', symbol: 'BTCUSDT', sequence: 12345, trade: { exchange: 'binance', base: 'bitcoin', quote: 'tether', direction: 'sell', price: 16578.5, volume: 0.001, timestamp: 1672515782134, priceUsd: 16578.5, tradeId: '12345', receivedAt: AT } }]);
    expect(p.parse(frame.replace('"m":true', '"m":false'), AT)[0]).toMatchObject({ trade: { direction: 'buy' } });
  });
  it('yields nothing for acks, rejects garbage and non-USD quotes', () => {
    expect(p.parse('{"result":null,"id":1}', AT)).toEqual([{ kind: 'ignore' }]);
    expect(p.parse('{"stream":"ethbtc@trade","data":{"e":"trade","s":"ETHBTC","t":1,"p":"0.05","q":"1","T":1,"m":true}}', AT)).toEqual([expect.objectContaining({ kind: 'rejected', reason: 'invalid', detail: expect.stringMatching(/quote BTC is not US dollars/) })]);
    expect(p.parse('}{', AT)).toEqual([expect.objectContaining({ kind: 'rejected', reason: 'malformed' })]);
  });
  it('reports both error shapes with what Binance said and its code', () => {
    expect(p.parse('{"code":2,"msg":"Invalid request"}', AT)).toEqual([{ kind: 'error', message: 'binance: Invalid request (code 2)', fatal: false }]);
    expect(p.parse('{"code":2,"msg":"Invalid request: unknown variant `SUBSCRIBEE`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`"}', AT)).toEqual([{ kind: 'error', message: 'binance: Invalid request: unknown variant `SUBSCRIBEE`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE` (code 2)', fatal: false }]);
    expect(p.parse('{"id":1,"error":{"code":2,"msg":"Invalid request: request ID must be an unsigned integer"}}', AT)).toEqual([{ kind: 'error', message: 'binance: Invalid request: request ID must be an unsigned integer (code 2)', fatal: false }]);
    expect(p.parse('{"code":0,"msg":"Unknown property","id":7}', AT)).toEqual([{ kind: 'error', message: 'binance: Unknown property (code 0)', fatal: false }]);
  });
});

describe('coinbase', () => {
  const p = coinbase(['SKL-USD']);
  it('subscribes to matches and heartbeat', () => {
    expect(JSON.parse(p.subscribeMessages()[0])).toEqual({ type: 'subscribe', product_ids: ['SKL-USD'], channels: ['matches', 'heartbeat'] });
  });
  it('turns the real 2021-04-17 capture into trades, inverting the maker side', () => {
    const lines = readFileSync('test/fixtures/coinbase-matches-2021-04-17.raw.jsonl', 'utf8').split('\n').filter(Boolean);
    const out = lines.flatMap((l) => p.parse(l, AT));
    const trades = out.filter((m) => m.kind === 'trade');
    const rejected = out.filter((m) => m.kind === 'rejected');
    expect(trades).toHaveLength(52); // the SKL-USD matches
    expect(rejected).toHaveLength(45); // BTC, EUR and GBP quotes have no USD price
    // The second line of the capture, by hand: maker sold 450 SKL at 0.791, so the taker bought.
    expect(trades[0]).toEqual({ kind: 'trade', symbol: 'SKL-USD', sequence: 1568268, trade: { exchange: 'coinbase', base: 'skale-network', quote: 'united-states-dollar', direction: 'buy', price: 0.791, volume: 450, timestamp: Date.parse('2021-04-17T16:43:37.121Z'), priceUsd: 0.791, tradeId: '1568268', receivedAt: AT } });
    for (const [i, line] of lines.entries()) {
      const raw = JSON.parse(line);
      const m = out[i];
      if (m.kind !== 'trade') continue;
      expect(m.trade.direction).toBe(raw.side === 'sell' ? 'buy' : 'sell');
      expect(m.trade.volume).toBe(Number(raw.size));
      expect(m.trade.timestamp).toBe(Math.floor(Date.parse(raw.time)));
    }
  });
  it('yields nothing for subscriptions and heartbeats, and reports errors', () => {
    expect(p.parse('{"type":"subscriptions","channels":[{"name":"matches","product_ids":["SKL-USD"]}]}', AT)).toEqual([{ kind: 'ignore' }]);
    expect(p.parse('{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"SKL-USD","time":"2014-11-07T08:19:28.464459Z"}', AT)).toEqual([{ kind: 'heartbeat' }]);
    expect(p.parse('{"type":"error","message":"Failed to subscribe","reason":"SKL-XYZ is not a valid product"}', AT)).toEqual([{ kind: 'error', message: 'coinbase: Failed to subscribe (SKL-XYZ is not a valid product)', fatal: false }]);
    expect(p.parse('{"type":"error","message":"Authentication Failed"}', AT)).toEqual([{ kind: 'error', message: 'coinbase: Authentication Failed', fatal: false }]);
  });
});

describe('kraken v2', () => {
  const p = kraken(['BTC/USD']);
  it('normalises trade updates (taker side, RFC 3339 time, sequential trade_id)', () => {
    const frame = '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"sell","price":68000.1,"qty":0.0125,"ord_type":"market","trade_id":4665846,"timestamp":"2024-06-01T10:00:01.123456Z"},{"symbol":"BTC/USD","side":"buy","price":68000.2,"qty":0.5,"ord_type":"limit","trade_id":4665847,"timestamp":"2024-06-01T10:00:01.200Z"}]}';
    const out = p.parse(frame, AT);
    expect(out).toHaveLength(2);
    expect(out[0]).toEqual({ kind: 'trade', symbol: 'BTC/USD', sequence: 4665846, trade: { exchange: 'kraken', base: 'bitcoin', quote: 'united-states-dollar', direction: 'sell', price: 68000.1, volume: 0.0125, timestamp: Date.parse('2024-06-01T10:00:01.123Z'), priceUsd: 68000.1, tradeId: '4665846', receivedAt: AT } });
    expect(out[1]).toMatchObject({ sequence: 4665847, trade: { direction: 'buy', volume: 0.5 } });
  });
  it('yields nothing for acks, heartbeats and status; reports failed requests', () => {
    expect(p.parse('{"method":"subscribe","result":{"channel":"trade","snapshot":false,"symbol":"BTC/USD"},"success":true,"time_in":"2024-06-01T10:00:00.000000Z","time_out":"2024-06-01T10:00:00.000100Z"}', AT)).toEqual([{ kind: 'ignore' }]);
    expect(p.parse('{"channel":"heartbeat"}', AT)).toEqual([{ kind: 'heartbeat' }]);
    expect(p.parse('{"channel":"status","type":"update","data":[{"api_version":"v2","system":"online"}]}', AT)).toEqual([{ kind: 'ignore' }]);
    expect(p.parse('{"method":"subscribe","error":"Currency pair not supported XBT/XYZ","success":false}', AT)).toEqual([{ kind: 'error', message: 'kraken: Currency pair not supported XBT/XYZ', fatal: false }]);
    expect(p.parse('{"error":"Malformed request","success":false,"time_in":"2024-06-01T10:00:00.000000Z","time_out":"2024-06-01T10:00:00.000100Z"}', AT)).toEqual([{ kind: 'error', message: 'kraken: Malformed request', fatal: false }]);
    expect(p.parse('{"error":"Exceeded msg rate"}', AT)).toEqual([{ kind: 'error', message: 'kraken: Exceeded msg rate', fatal: false }]);
  });
});

describe('bybit v5', () => {
  const p = bybit();
  it('normalises publicTrade (S is the taker side)', () => {
    const frame = '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}';
    expect(p.parse(frame, AT)).toEqual([{ kind: 'trade', symbol: 'BTCUSDT', sequence: undefined, trade: { exchange: 'bybit', base: 'bitcoin', quote: 'tether', direction: 'buy', price: 16578.5, volume: 0.001, timestamp: 1672304486865, priceUsd: 16578.5, tradeId: '20f43950-d8dd-5b31-9112-a178eb6023af', receivedAt: AT } }]);
  });
  it('pings with {"op":"ping"} and takes the pong as a heartbeat; acks yield nothing', () => {
    expect(p.appPing).toBe('{"op":"ping"}');
    expect(p.parse('{"success":true,"ret_msg":"pong","conn_id":"0970e817","req_id":"","op":"ping"}', AT)).toEqual([{ kind: 'heartbeat' }]);
    expect(p.parse('{"success":true,"ret_msg":"","conn_id":"d5phu6rb","req_id":"1","op":"subscribe"}', AT)).toEqual([{ kind: 'ignore' }]);
    expect(p.parse('{"success":false,"ret_msg":"Invalid symbol","op":"subscribe"}', AT)).toEqual([{ kind: 'error', message: 'bybit: Invalid symbol', fatal: false }]);
    expect(p.parse('{"success":false,"ret_msg":"error:request not authorized","conn_id":"d5phu6rb","req_id":""}', AT)).toEqual([{ kind: 'error', message: 'bybit: error:request not authorized', fatal: false }]);
  });
});

describe('okx', () => {
  const p = okx();
  it('normalises trades', () => {
    const frame = '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897","count":"3"}]}';
    expect(p.parse(frame, AT)).toEqual([{ kind: 'trade', symbol: 'BTC-USDT', sequence: undefined, trade: { exchange: 'okx', base: 'bitcoin', quote: 'tether', direction: 'buy', price: 42219.9, volume: 0.12060306, timestamp: 1630048897897, priceUsd: 42219.9, tradeId: '130639474', receivedAt: AT } }]);
  });
  it('pings with "ping"; pong, subscribe events and errors yield no trade', () => {
    expect(p.appPing).toBe('ping');
    expect(p.parse('pong', AT)).toEqual([{ kind: 'heartbeat' }]);
    expect(p.parse('{"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a4d3ae55"}', AT)).toEqual([{ kind: 'ignore' }]);
    expect(p.parse('{"event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}', AT)).toEqual([{ kind: 'error', message: 'okx: Invalid request (code 60012)', fatal: false }]);
  });
});

describe('coincap', () => {
  it('takes trade messages as they are, filtered by asset', () => {
    const p = coincap(['bitcoin']);
    const btc = '{"exchange":"binance","base":"bitcoin","quote":"tether","direction":"buy","price":36.59,"volume":0.901,"timestamp":1666422331415,"priceUsd":36.61}';
    expect(p.parse(btc, AT)).toEqual([{ kind: 'trade', symbol: 'binance:bitcoin/tether', trade: { ...JSON.parse(btc), receivedAt: AT } }]);
    expect(p.parse(btc.replace('bitcoin', 'ethereum'), AT)).toEqual([{ kind: 'ignore' }]);
    expect(p.parse(btc.replace('"volume":0.901', '"volume":-1'), AT)).toEqual([expect.objectContaining({ kind: 'rejected', reason: 'invalid' })]);
  });
  it('prices: emits prices, never trades; Unauthorized is a fatal error that says what to do', () => {
    const p = coincapPrices(['bitcoin', 'ethereum'], 'k3y');
    expect(p.url).toBe('wss://wss.coincap.io/prices?assets=bitcoin%2Cethereum&apiKey=k3y');
    expect(p.parse('{"bitcoin":"6929.82520245","ethereum":"404.97286106"}', AT)).toEqual([{ kind: 'price', asset: 'bitcoin', priceUsd: 6929.82520245 }, { kind: 'price', asset: 'ethereum', priceUsd: 404.97286106 }]);
    expect(p.parse('Unauthorized', AT)).toEqual([expect.objectContaining({ kind: 'error', fatal: true, message: expect.stringMatching(/COINCAP_API_KEY/) })]);
  });
});

describe('symbols and specs', () => {
  it('maps exchange symbols to CoinCap ids, unknown ones lowercased', () => {
    expect(['BTC', 'XBT', 'eth', 'USDT', 'USD', 'PEPE'].map(coincapId)).toEqual(['bitcoin', 'bitcoin', 'ethereum', 'tether', 'united-states-dollar', 'pepe']);
    expect(splitGluedSymbol('btcfdusd')).toEqual(['BTC', 'FDUSD']);
    expect(splitGluedSymbol('ETHBTC')).toEqual(['ETH', 'BTC']);
  });
  it('parses kind[:SYMBOLS][@URL]', () => {
    expect(parseFeedSpec('binance:btcusdt,ethusdt')).toEqual({ kind: 'binance', symbols: ['btcusdt', 'ethusdt'], url: undefined });
    expect(parseFeedSpec('coincap@ws://127.0.0.1:9000/trades/binance')).toEqual({ kind: 'coincap', symbols: undefined, url: 'ws://127.0.0.1:9000/trades/binance' });
    expect(parseFeedSpec('replay:x')).toBeNull();
    expect(() => parseFeedSpec('okx@http://x')).toThrow(/ws:\/\/ or wss:\/\//);
  });
});
