// The trade scanner is a fast path: whatever it accepts, parseTrade (JSON.parse + validateTrade) must
// accept with the same values, Object.is on every number (-0 and the last bit of a double count); and
// whatever parseTrade rejects, the scanner must leave to it (answer null). Differential and
// property-based over generated lines, fuzzed real lines and the real recordings; fast-check prints the
// seed and the shrunk line on a failure.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseTrade } from '../../src/core/parse-trade.js';
import { TradeScanner } from '../../src/core/scan-trade.js';
import type { Trade } from '../../src/core/trade.js';
import { KeyTable, TradeColumns } from '../../src/core/trade-columns.js';
import { WasmTradeScanner } from '../../src/core/wasm-scanner.js';

const RECEIVED_AT = Date.UTC(2026, 0, 1);
const KRAKEN = readFileSync('data/kraken-btcusd-2019-07-01.coincap.jsonl', 'utf8').split('\n').filter(Boolean);
const FIELDS = ['exchange', 'base', 'quote', 'direction', 'price', 'volume', 'timestamp', 'priceUsd', 'tradeId', 'receivedAt'] as const;

/** The contract's fields of a trade, numbers as their exact bits ("-0" apart from "0"). */
function fields(t: Trade): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of FIELDS) {
    const v = (t as unknown as Record<string, unknown>)[f];
    out[f] = typeof v === 'number' ? (Object.is(v, -0) ? '-0' : v) : v;
  }
  return out;
}

/**
 * The WebAssembly scanner (wasm-scanner.ts) beside the JavaScript one: one of each per test, so that
 * both carry their caches (recent strings, key order) from line to line.
 */
class Scanners {
  readonly js = new TradeScanner();
  private readonly keys = new KeyTable();
  private readonly wasm = new WasmTradeScanner(this.keys);

  /** The module's trade for `line` read as a piece of one line, or null where it leaves the line to the general path. */
  wasmScan(line: string, receivedAt: number): Trade | null {
    const data = Buffer.from(line, 'utf8');
    this.wasm.load(data);
    this.wasm.scan(0, receivedAt);
    if (this.wasm.statuses()[0] !== 1) return null;
    const out = new TradeColumns(this.keys.keys, 1);
    this.wasm.appendTrades(out, 0, 1, data);
    return out.at(0);
  }
}

/**
 * Scans `line` (as bytes, inside a larger buffer, as the replay hands it) and checks it against
 * parseTrade; and the WebAssembly scanner must take exactly the lines the JavaScript one takes, with
 * the same values. Returns whether the fast path took it.
 */
function check(scanners: Scanners, line: string, receivedAt = RECEIVED_AT): boolean {
  const bytes = Buffer.from(`##${line}##`, 'utf8');
  const fast = scanners.js.scan(bytes, 2, bytes.length - 2, receivedAt);
  const slow = parseTrade(line, receivedAt);
  // A piece's line ends at its first LF: a line holding one is not one line to the module.
  if (!line.includes('\n')) {
    const wasm = scanners.wasmScan(line, receivedAt);
    if ((wasm === null) !== (fast === null)) throw new Error(`the WebAssembly scanner ${wasm ? 'took' : 'left'} a line the JavaScript one ${fast ? 'took' : 'left'}: ${line}`);
    if (wasm !== null) {
      expect(fields(wasm), line).toEqual(fields(fast!));
      for (const f of ['price', 'volume', 'timestamp', 'priceUsd', 'receivedAt'] as const) {
        if (!Object.is(wasm[f], fast![f])) throw new Error(`${f}: ${wasm[f]} (WebAssembly) vs ${fast![f]} in ${line}`);
      }
    }
  }
  if (fast === null) return false;
  if (!slow.ok) throw new Error(`the scanner accepted a line parseTrade rejects (${slow.reason}: ${slow.detail}): ${line}`);
  expect(fields(fast), line).toEqual(fields(slow.trade));
  for (const f of ['price', 'volume', 'timestamp', 'priceUsd', 'receivedAt'] as const) {
    if (!Object.is(fast[f], slow.trade[f])) throw new Error(`${f}: ${fast[f]} vs ${slow.trade[f]} in ${line}`);
  }
  return true;
}

/** A JSON number spelled any way JSON allows: digits, fraction, exponent, sign, leading zeros in the exponent. */
const numberText = fc
  .tuple(
    fc.boolean(),
    fc.oneof(fc.constant('0'), fc.stringMatching(/^[1-9][0-9]{0,20}$/)),
    fc.option(fc.stringMatching(/^[0-9]{1,20}$/), { nil: undefined }),
    fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), fc.stringMatching(/^[0-9]{1,4}$/)), { nil: undefined }),
  )
  .map(([neg, int, frac, exp]) => `${neg ? '-' : ''}${int}${frac !== undefined ? `.${frac}` : ''}${exp ? exp.join('') : ''}`);
/** Numbers a real feed sends: a double's shortest form, and toFixed forms. */
const doubleText = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).map(String),
  fc.tuple(fc.double({ min: 1e-12, max: 1e9, noNaN: true }), fc.integer({ min: 0, max: 12 })).map(([d, k]) => d.toFixed(k)),
);
const anyNumber = fc.oneof(numberText, doubleText, fc.integer({ min: 1_230_000_000_000, max: 1_800_000_000_000 }).map(String));
const asciiString = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 12 });
const anyString = fc.oneof(
  fc.constantFrom('bitcoin', 'ethereum', 'kraken', 'buy', 'sell', 'united-states-dollar', '', 'x'.repeat(200), 'x'.repeat(201)),
  asciiString,
  fc.string({ unit: 'binary', maxLength: 8 }),
);
/** A JSON string token, sometimes spelled with escapes that decode to the same text. */
const stringToken = fc.tuple(anyString, fc.boolean()).map(([s, escape]) => (escape ? JSON.stringify(s).replace(/[a-z]/, (c) => `\\u00${c.charCodeAt(0).toString(16)}`) : JSON.stringify(s)));
const valueToken = fc.oneof(
  { weight: 4, arbitrary: anyNumber },
  { weight: 3, arbitrary: stringToken },
  { weight: 1, arbitrary: fc.constantFrom('null', 'true', 'false', '[]', '{}', '"buy"', '"sell"', '1e400', '-', '01', '1.', '.5', '1e') },
);
const keyToken = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...FIELDS).map((k) => JSON.stringify(k)) },
  { weight: 1, arbitrary: fc.constantFrom('"pric\\u0065"', '"other"', '"__proto__"', '"Price"', '""') },
);
const space = fc.constantFrom('', '', '', ' ', '\t', '\r', '  ');

/** A trade-like object: the real fields in a random order, sometimes missing, repeated or replaced. */
const generatedLine = fc
  .tuple(
    // Mostly all eight required fields, in any order, with or without the optional two.
    fc.oneof({ weight: 4, arbitrary: fc.shuffledSubarray([...FIELDS], { minLength: 8 }) }, { weight: 1, arbitrary: fc.shuffledSubarray([...FIELDS], { minLength: 5 }) }),
    fc.oneof({ weight: 4, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(fc.tuple(keyToken, valueToken), { minLength: 1, maxLength: 2 }) }),
    fc.array(space, { minLength: 4, maxLength: 4 }),
    fc.oneof({ weight: 1, arbitrary: fc.constant({} as Record<string, string>) }, { weight: 2, arbitrary: fc.dictionary(fc.constantFrom(...FIELDS), valueToken, { minKeys: 1, maxKeys: 2 }) }),
    fc.constantFrom('', '', '', '', '', '', ' ', 'x', ',', '}', '{}'),
  )
  .map(([keys, extra, [s1, s2, s3, s4], override, trailing]) => {
    const base: Record<string, string> = {
      exchange: '"kraken"',
      base: '"bitcoin"',
      quote: '"united-states-dollar"',
      direction: '"buy"',
      price: '10749.4',
      volume: '0.004',
      timestamp: '1561939203172',
      priceUsd: '10749.4',
      tradeId: '"123"',
      receivedAt: '1561939203500',
    };
    const parts = keys.map((k) => `${JSON.stringify(k)}${s2}:${s3}${override[k] ?? base[k]}`);
    for (const [k, v] of extra) parts.splice(parts.length >> 1, 0, `${k}:${v}`);
    return `${s1}{${s2}${parts.join(`${s3},${s4}`)}${s4}}${s1}${trailing}`;
  });

/** A real line with a few bytes changed, inserted or removed. */
const fuzzedReal = fc
  .tuple(fc.constantFrom(...KRAKEN), fc.array(fc.tuple(fc.nat(), fc.constantFrom('del', 'ins', 'set'), fc.constantFrom('"', ',', ':', '}', '{', '\\', ' ', '0', '9', '.', 'e', '-', 'x', '\u00e9', '\u0000')), { minLength: 1, maxLength: 3 }))
  .map(([line, edits]) => {
    let l = line;
    for (const [at, op, ch] of edits) {
      const i = at % (l.length + 1);
      l = op === 'del' ? l.slice(0, i) + l.slice(i + 1) : op === 'ins' ? l.slice(0, i) + ch + l.slice(i) : l.slice(0, i) + ch + l.slice(i + 1);
    }
    return l;
  });

describe('TradeScanner (and the WebAssembly scanner) against parseTrade', () => {
  it('reads every real recorded line itself, with the values JSON.parse gives', () => {
    const scanners = new Scanners();
    let fast = 0;
    for (const line of KRAKEN) if (check(scanners, line)) fast++;
    // The fast path is the point: a scanner that left every line to parseTrade would pass the rest.
    expect(fast).toBe(KRAKEN.length);
  });

  it('agrees on generated trade-shaped lines (keys in any order, missing, repeated, unknown; any spelling of numbers and strings)', () => {
    const scanners = new Scanners();
    let fast = 0;
    fc.assert(
      fc.property(generatedLine, (line) => {
        if (check(scanners, line)) fast++;
      }),
      { numRuns: 20_000 },
    );
    // Both paths must be exercised, or the property says little.
    expect(fast).toBeGreaterThan(1000);
  });

  it('agrees on every spelling of the numbers', () => {
    const scanners = new Scanners();
    let fast = 0;
    fc.assert(
      fc.property(anyNumber, anyNumber, anyNumber, (price, volume, priceUsd) => {
        const line = `{"exchange":"kraken","base":"bitcoin","quote":"united-states-dollar","direction":"sell","price":${price},"volume":${volume},"timestamp":1561939203172,"priceUsd":${priceUsd}}`;
        if (check(scanners, line)) fast++;
      }),
      { numRuns: 50_000 },
    );
    expect(fast).toBeGreaterThan(5000);
  });

  it('agrees on timestamps around the plausible range and on receive times', () => {
    const scanners = new Scanners();
    fc.assert(
      fc.property(fc.oneof(anyNumber, fc.integer({ min: Date.UTC(2009, 0, 2), max: Date.UTC(2009, 0, 4) }).map(String)), fc.integer({ min: Date.UTC(2008, 0, 1), max: Date.UTC(2030, 0, 1) }), (ts, receivedAt) => {
        check(scanners, `{"exchange":"e","base":"b","quote":"q","direction":"buy","price":1,"volume":1,"timestamp":${ts},"priceUsd":1}`, receivedAt);
      }),
      { numRuns: 20_000 },
    );
  });

  it('agrees on fuzzed real lines and on arbitrary text', () => {
    const scanners = new Scanners();
    fc.assert(
      fc.property(fc.oneof(fuzzedReal, fc.string({ unit: 'binary', maxLength: 60 }), fc.string({ maxLength: 60 })), (line) => {
        check(scanners, line);
      }),
      { numRuns: 30_000 },
    );
  });

  it('interns repeated strings, and tells apart strings whose hashes collide', () => {
    const scanner = new TradeScanner();
    // "Aa" and "BB" have the same 31-hash.
    const line = (base: string) => `{"exchange":"k","base":"${base}","quote":"q","direction":"buy","price":1,"volume":1,"timestamp":1561939203172,"priceUsd":1}`;
    const scan = (l: string) => {
      const b = Buffer.from(l);
      return scanner.scan(b, 0, b.length, RECEIVED_AT)!;
    };
    expect(scan(line('Aa')).base).toBe('Aa');
    expect(scan(line('BB')).base).toBe('BB');
    expect(scan(line('Aa')).base).toBe('Aa');
    for (let i = 0; i < 5000; i++) expect(scan(line(`asset-${i}`)).base).toBe(`asset-${i}`); // past the intern table's size
  });
});
