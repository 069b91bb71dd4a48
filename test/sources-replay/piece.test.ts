// One verdict per line: the replay's piece scanner (the trade scanner where it can, parseTrade where it
// cannot) must judge every line exactly as the plain path (parseTrade on that line alone) does,
// whatever its neighbours.
// Differential and property-based: fast-check prints the seed and the shrunk input on a failure.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseTrade } from '../../src/core/parse-trade.js';
import { TradeScanner } from '../../src/core/scan-trade.js';
import type { Trade } from '../../src/core/trade.js';
import { scanPiece, tradesByLine } from '../../src/sources/scan-piece.js';
import { KeyTable } from '../../src/core/trade-columns.js';
import { WasmTradeScanner } from '../../src/core/wasm-scanner.js';

const RECEIVED_AT = Date.UTC(2026, 0, 1);
const KRAKEN = readFileSync('data/kraken-btcusd-2019-07-01.coincap.jsonl', 'utf8').split('\n').filter(Boolean);

const isBlank = (l: string) => /^[ \t\r]*$/.test(l);

/** The plain path, line by line: what every line's verdict must be. A CR before the LF is the line ending, not the line. */
function plainVerdicts(lines: string[]): string[] {
  return lines.map((l) => l.replace(/\r$/, '')).map((l) => {
    if (isBlank(l)) return 'blank';
    const v = parseTrade(l, RECEIVED_AT);
    return v.ok ? accepted(v.trade) : JSON.stringify(v);
  });
}

/** An accepted trade's contract fields, in one order, -0 told apart from 0. */
const accepted = (t: Trade) =>
  'ok ' + JSON.stringify([t.exchange, t.base, t.quote, t.direction, t.price, t.volume, t.timestamp, t.priceUsd, t.tradeId, t.receivedAt].map((v) => (Object.is(v, -0) ? '-0' : v)));

/**
 * The two scanners scanPiece takes, each with the key table it writes to. One of each per test, as a
 * replay has one for all its pieces: what a scanner keeps from piece to piece (recent strings, the key
 * order, the module's string and key tables) is exercised too.
 */
const SCANNERS = [
  ['the JavaScript scanner', () => ({ keys: new KeyTable(), scanner: new TradeScanner() })],
  [
    'the WebAssembly scanner',
    () => {
      const keys = new KeyTable();
      return { keys, scanner: new WasmTradeScanner(keys) };
    },
  ],
] as const;
type Scanner = ReturnType<(typeof SCANNERS)[number][1]>;

function pieceVerdicts(lines: string[], { keys, scanner }: Scanner): string[] {
  const data = Buffer.from(lines.join('\n') + '\n');
  const piece = scanPiece(data, RECEIVED_AT, scanner, keys);
  const trades = tradesByLine(piece);
  expect(piece.lines).toBe(lines.length);
  // Each line's end is where the next starts, and the last one is the piece's end.
  expect(piece.lineEnd(lines.length - 1)).toBe(data.length);
  return lines.map((l, i) => {
    expect(piece.line(i)).toBe(l.replace(/\r$/, ''));
    const trade = trades[i];
    if (trade !== null) return accepted(trade);
    const rejection = piece.rejections.get(i);
    return rejection === undefined ? 'blank' : JSON.stringify(rejection);
  });
}

const realLine = fc.constantFrom(...KRAKEN);
/** A real line cut anywhere: the start or the end of a value that spans lines. */
const cutLine = fc.tuple(realLine, fc.nat()).chain(([l, n]) => fc.constantFrom(l.slice(0, n % l.length), l.slice(n % l.length)));
/** Bits of JSON structure that, across a line boundary, could make two lines one value or one line two. */
const fragment = fc.constantFrom('{', '}', '[', ']', ',', '"', ':', '],[', '},{', '"x":', '1', 'null', '{"a":[1', '2]}', '{"a":[[{}', '{}]]}', '\\', '\u0000', '\r', ' ', '\t', '€', '\u2028');
const structural = fc.array(fc.oneof(fragment, realLine, cutLine), { minLength: 1, maxLength: 4 }).map((parts) => parts.join(''));
/** Two real trades on one line, joined as a joined array would join lines. */
const twoOnOneLine = fc.tuple(realLine, realLine, fc.constantFrom(',', '],[', ' ', ',\t')).map(([a, b, sep]) => a + sep + b);
/** A real trade with one field's value replaced by something of another type or size. */
const swapped = fc
  .tuple(realLine, fc.constantFrom('price', 'volume', 'timestamp', 'priceUsd', 'base', 'direction'), fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant(1e308), fc.constant(5e-324), fc.constant(1561939203)))
  .map(([l, field, value]) => JSON.stringify({ ...JSON.parse(l), [field]: value }));
const deep = fc.integer({ min: 1, max: 3000 }).map((n) => '['.repeat(n) + ']'.repeat(n));
const anyLine = fc.oneof(
  { weight: 6, arbitrary: realLine },
  { weight: 2, arbitrary: structural },
  { weight: 1, arbitrary: cutLine },
  { weight: 1, arbitrary: twoOnOneLine },
  { weight: 1, arbitrary: swapped },
  { weight: 1, arbitrary: fc.constantFrom('', '  ', '\r', '\t') },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map((s) => s.replace(/\n/g, '')) },
  { weight: 1, arbitrary: deep },
);

/**
 * A line holding two values next to one value spread over two lines: the line count still matches the
 * value count, so only per-line boundaries tell them apart. (This fooled the first fast path.)
 */
const splitAndMerge = fc
  .tuple(realLine, realLine, realLine, fc.nat(), fc.constantFrom(',', '],['), fc.constantFrom('anywhere', 'at a comma', 'in an array'))
  .map(([a, b, c, n, sep, how]) => {
    // A trade whose extra field opens an array that the next line, starting with `{`, closes.
    if (how === 'in an array') return [a + sep + b, c.slice(0, -1) + ',"a":[{}', '{}]}'];
    if (how === 'at a comma') {
      // Cut at one of the trade's own commas, dropping it: joined again by ",\n" it is one object.
      const commas = [...c.matchAll(/,"/g)].map((m) => m.index!);
      const at = commas[n % commas.length];
      return [a + sep + b, c.slice(0, at), c.slice(at + 1)];
    }
    const cut = 1 + (n % (c.length - 1));
    return [a + sep + b, c.slice(0, cut), c.slice(cut)];
  });
const lineGroups = fc.array(fc.oneof({ weight: 8, arbitrary: anyLine.map((l) => [l]) }, { weight: 1, arbitrary: splitAndMerge }), { minLength: 1, maxLength: 30 }).map((groups) => groups.flat());

describe.each(SCANNERS)('scanPiece with %s: one verdict per line', (_name, make) => {
  afterEach(() => vi.restoreAllMocks());

  it('agrees with the plain per-line path on generated, fuzzed and real input', () => {
    const shared = make();
    fc.assert(
      fc.property(lineGroups, (lines) => {
        expect(pieceVerdicts(lines, shared)).toEqual(plainVerdicts(lines));
      }),
      { numRuns: 3000 },
    );
  });

  it('agrees on bracket-free pieces too (lines of trades, the shape the scanner reads most)', () => {
    const bracketFree = anyLine.filter((l) => !/[[\]]/.test(l));
    const shared = make();
    fc.assert(
      fc.property(fc.array(bracketFree, { minLength: 1, maxLength: 60 }), (lines) => {
        expect(pieceVerdicts(lines, shared)).toEqual(plainVerdicts(lines));
      }),
      { numRuns: 3000 },
    );
  });

  it.each([
    ['two trades on one line next to a value split over two lines', [`${KRAKEN[0]},${KRAKEN[1]}`, '{"x":[1', '2]}', KRAKEN[2]]],
    ['a string that would run across a line boundary', ['{"exchange":"kraken', `","base":"bitcoin","quote":"united-states-dollar","direction":"buy","price":1,"volume":1,"timestamp":1561939203172,"priceUsd":1}`, `${KRAKEN[3]}],[${KRAKEN[4]}`]],
    ['an array opened on one line and closed on the next, in valid trades', [KRAKEN[5].replace('}', ',"a":[[{}'), '{}]]}', `${KRAKEN[6]},${KRAKEN[7]}`]],
    ['an object opened on one line and closed on the next', [KRAKEN[8].slice(0, -1), ',"z":1}', `${KRAKEN[9]},${KRAKEN[10]}`]],
  ])('gives the crafted case "%s" the per-line verdicts', (_, lines) => {
    expect(pieceVerdicts(lines, make())).toEqual(plainVerdicts(lines));
    // None of these lines is one whole trade but the plain trades: the fast path cannot be fooled.
    const acceptedLines = plainVerdicts(lines).filter((v) => v.startsWith('ok ')).length;
    expect(acceptedLines).toBe(lines.filter((l) => KRAKEN.includes(l)).length);
  });

  it('rejects a line with bytes that are not UTF-8 as malformed, and reads the lines around it', () => {
    const [before, after] = KRAKEN[1].split('bitcoin');
    const bytes = Buffer.concat([Buffer.from(`${KRAKEN[0]}\n${before}bit`), Buffer.from([0xff]), Buffer.from(`coin${after}\n${KRAKEN[2]}\n`)]);
    const { keys, scanner } = make();
    const piece = scanPiece(bytes, RECEIVED_AT, scanner, keys);
    expect(piece.lines).toBe(3);
    expect([...piece.isTrade]).toEqual([1, 0, 1]);
    expect(piece.rejections.get(1)).toMatchObject({ reason: 'malformed', detail: expect.stringMatching(/^not UTF-8/) });
    expect(piece.trades.length).toBe(2);
  });

  it('reads real data without JSON.parse, and a last line without a newline too', () => {
    const parse = vi.spyOn(JSON, 'parse');
    const text = KRAKEN.slice(0, 400).join('\n');
    const { keys, scanner } = make();
    const piece = scanPiece(Buffer.from(text), RECEIVED_AT, scanner, keys);
    expect(piece.lines).toBe(400);
    expect(piece.trades.length).toBe(400);
    expect(tradesByLine(piece).filter((t) => t !== null)).toHaveLength(400);
    expect(piece.lineEnd(399)).toBe(Buffer.byteLength(text));
    expect(parse).not.toHaveBeenCalled();
  });
});
