// Test inputs built from the real Kraken hour (data/README.md): reordered, damaged and relabelled in
// seeded, repeatable ways. Each returns the JSONL text.
import { readFileSync } from 'node:fs';
import { seededRandom } from '../../src/core/random.js';

export const KRAKEN_FILE = 'data/kraken-btcusd-2019-07-01.coincap.jsonl';

type Row = Record<string, unknown> & { timestamp: number; price: number; priceUsd: number };


export function krakenRows(): Row[] {
  return readFileSync(KRAKEN_FILE, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Row);
}

const toText = (rows: (Row | string)[]) => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';

/** Each trade arrives up to `maxDelayMs` after its event time: disorder bounded by that delay. */
export function disordered(rows: Row[], maxDelayMs: number, seed: number): Row[] {
  const r = seededRandom(seed);
  return rows
    .map((row, i) => ({ row, key: row.timestamp + r() * maxDelayMs, i }))
    .sort((a, b) => a.key - b.key || a.i - b.i)
    .map((x) => x.row);
}

/** The Kraken hour as bitcoin, plus copies relabelled as ethereum and solana at other prices and times. */
export function severalAssets(seed: number): Row[] {
  const btc = krakenRows();
  const eth = btc.map((t) => ({ ...t, base: 'ethereum', price: +(t.price / 37).toFixed(2), priceUsd: +(t.priceUsd / 37).toFixed(2), timestamp: t.timestamp + 7_001 }));
  const sol = btc.filter((_, i) => i % 3 === 0).map((t) => ({ ...t, base: 'solana', exchange: 'binance', quote: 'tether', price: +(t.price / 500).toFixed(4), priceUsd: +(t.priceUsd / 499.9).toFixed(4), timestamp: t.timestamp - 13_003 }));
  return disordered([...btc, ...eth, ...sol], 20_000, seed);
}

/** Malformed and invalid lines, and far-late trades, spread through otherwise good input. */
export const BAD_LINES = [
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"buy","price":107',
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"buy","price":"10749.4","volume":0.1,"timestamp":1561939203172,"priceUsd":10749.4}',
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"sell","price":10749.4,"volume":-0.5,"timestamp":1561939203172,"priceUsd":10749.4}',
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"sell","price":10749.4,"volume":0.5,"timestamp":1561939203172,"priceUsd":0}',
  '{"exchange":"kraken","quote":"united-states-dollar","direction":"sell","price":10749.4,"volume":0.5,"timestamp":1561939203172,"priceUsd":10749.4}',
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"hold","price":10749.4,"volume":0.5,"timestamp":1561939203172,"priceUsd":10749.4}',
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"buy","price":10749.4,"volume":0.5,"timestamp":1561939203172.5,"priceUsd":10749.4}',
  '[1,2,3]',
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"buy","price":1,"volume":0,"timestamp":1561939203172,"priceUsd":1}',
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"buy","price":1,"volume":1,"timestamp":1.5619392031e12,"priceUsd":1,"tradeId":{"a":1}}',
  'not json at all',
  '{"exchange":"kraken","base":"","quote":"united-states-dollar","direction":"buy","price":1,"volume":1,"timestamp":1561939203172,"priceUsd":1}',
  '"just a string"',
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"buy","price":1e400,"volume":1,"timestamp":1561939203172,"priceUsd":1}',
  // Values whose window sums would overflow or lose their precision, and implausible event times.
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"buy","price":1e308,"volume":1e308,"timestamp":1561939203172,"priceUsd":1e308}',
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"sell","price":1,"volume":1,"timestamp":1561939203172,"priceUsd":5e-324}',
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"sell","price":10749.4,"volume":0.5,"timestamp":1561939203,"priceUsd":10749.4}',
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"sell","price":10749.4,"volume":0.5,"timestamp":1561939203172000,"priceUsd":10749.4}',
  '{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"sell","price":10749.4,"volume":0.5,"timestamp":8600000000000000,"priceUsd":10749.4}',
  '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]',
];

export function withBadLines(rows: Row[], seed: number): (Row | string)[] {
  const r = seededRandom(seed);
  const out: (Row | string)[] = [];
  let bad = 0;
  rows.forEach((row, i) => {
    out.push(row);
    if (i > 0 && i % 97 === 0) out.push(BAD_LINES[bad++ % BAD_LINES.length]);
    // Now and then a trade from half an hour ago: late once the watermark has moved past it.
    if (i > 400 && r() < 0.01) out.push({ ...row, timestamp: row.timestamp - 30 * 60_000, priceUsd: 1, price: 1 });
  });
  out.push('', '   ');
  return out;
}

export const inputs = {
  inOrder: () => toText(krakenRows()),
  disordered: () => toText(disordered(krakenRows(), 4 * 60_000, 1)),
  malformed: () => toText(withBadLines(disordered(krakenRows(), 2 * 60_000, 2), 3)),
  severalAssets: () => toText(severalAssets(4)),
  /** Disorder (2 min) beyond a short watermark (1 min): late and partly-late trades for sliding windows. */
  lateAndSliding: () => toText(withBadLines(disordered([...krakenRows(), ...severalAssets(5).filter((t) => t.base === 'ethereum')], 2 * 60_000, 6), 7)),
};
