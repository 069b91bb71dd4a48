// A piece of whole lines judged line by line: each line a trade, a rejection, or blank. The replay's
// events are made from these, whichever thread scanned the lines (parallel-scan.ts).
import { parseTrade, type ParseResult } from '../core/parse-trade.js';
import type { TradeScanner } from '../core/scan-trade.js';
import { WasmTradeScanner } from '../core/wasm-scanner.js';
import { TradeColumns, type KeyTable } from '../core/trade-columns.js';
import type { Trade } from '../core/trade.js';

export type Rejection = Extract<ParseResult, { ok: false }>;

/** The verdicts on a piece of whole lines: per line a trade, a rejection, or neither (a blank line). */
export interface ScannedPiece {
  lines: number;
  /** The piece's trades, in line order. */
  trades: TradeColumns;
  /** Per line, 1 when it is a trade (the next of `trades`), 0 for a rejected or blank line. */
  isTrade: Uint8Array;
  /** Why line i was rejected, for the rejected lines only. */
  rejections: Map<number, Rejection>;
  /** Line i's text, without its LF or CRLF. */
  line(i: number): string;
  /** The byte offset after line i (its newline included), from the piece's start. */
  lineEnd(i: number): number;
}

/**
 * Judges every line of a piece (whole lines as bytes, each ending with a newline but for a file's last
 * line) on its own. Lines the scanner reads (trade messages it can read exactly, that pass every check)
 * cost no string and no JSON.parse; every other line gets parseTrade's verdict on its text. So each
 * verdict is the one parseTrade gives the line alone: test/sources-replay/piece.test.ts holds them equal.
 *
 * The piece keeps `data` (not a copy): its bytes must stay as they are for as long as the piece is used,
 * since a trade found late further on still needs its line for rejected_trades. The replay reads its
 * file into fresh memory for that (readFileChunks' `fresh`); copying each piece instead cost ~5% of a
 * replay's time.
 */
export function scanPiece(data: Buffer, receivedAt: number, scanner: TradeScanner | WasmTradeScanner, keys: KeyTable): ScannedPiece {
  if (scanner instanceof WasmTradeScanner) return scanPieceInModule(data, receivedAt, scanner, keys);
  // Room for lines of ~128 bytes (the trade message is ~160): the columns rarely grow.
  const trades = new TradeColumns(keys.keys, (data.length >> 7) + 16);
  const rejections = new Map<number, Rejection>();
  const ends: number[] = [];
  const isTrade: number[] = [];
  const line = (i: number): string => lineText(data, ends, i);
  for (let start = 0; start < data.length; ) {
    const i = ends.length;
    // The scanner finds the line's end itself when it reads the line; otherwise it is looked for here.
    let nl = scanner.scanLineInto(data, start, data.length, receivedAt, trades, keys);
    const scanned = nl !== -1;
    if (!scanned) {
      nl = data.indexOf(10, start);
      if (nl === -1) nl = data.length; // the file's last line, without a newline
    }
    ends.push(Math.min(nl + 1, data.length));
    isTrade.push(scanned || judgeLine(i, data, ends, receivedAt, trades, keys, rejections) ? 1 : 0);
    start = nl + 1;
  }
  return { lines: ends.length, trades, isTrade: Uint8Array.from(isTrade), rejections, line, lineEnd: (i) => ends[i] };
}

/**
 * scanPiece with the WebAssembly scanner (wasm-scanner.ts; `keys` must be the table it was made
 * with): it reads the lines a call at a time and hands back their ends and its trades as columns; the
 * lines it leaves are judged here as above, their trades appended between its own in line order.
 */
function scanPieceInModule(data: Buffer, receivedAt: number, scanner: WasmTradeScanner, keys: KeyTable): ScannedPiece {
  const trades = new TradeColumns(keys.keys, (data.length >> 7) + 16);
  const rejections = new Map<number, Rejection>();
  let ends = new Uint32Array((data.length >> 7) + 16);
  let isTrade = new Uint8Array(ends.length);
  let lines = 0;
  scanner.load(data);
  for (let from = 0; from < data.length; ) {
    const n = scanner.scan(from, receivedAt);
    if (lines + n > ends.length) {
      const capacity = Math.max(2 * ends.length, lines + n);
      ends = grown(ends, capacity);
      isTrade = grown(isTrade, capacity);
    }
    ends.set(scanner.lineEnds(), lines);
    const statuses = scanner.statuses();
    isTrade.set(statuses, lines);
    // The module's trades [copied, t) wait to be appended; a line it left is judged after them.
    let copied = 0;
    let t = 0;
    for (let j = 0; j < n; j++) {
      if (statuses[j] === 1) {
        t++;
        continue;
      }
      scanner.appendTrades(trades, copied, t, data);
      copied = t;
      const i = lines + j;
      if (judgeLine(i, data, ends, receivedAt, trades, keys, rejections)) isTrade[i] = 1;
    }
    scanner.appendTrades(trades, copied, t, data);
    lines += n;
    from = ends[lines - 1];
  }
  const lineEnds = ends;
  return { lines, trades, isTrade: isTrade.subarray(0, lines), rejections, line: (i) => lineText(data, lineEnds, i), lineEnd: (i) => lineEnds[i] };
}

function grown<T extends Uint32Array | Uint8Array>(a: T, capacity: number): T {
  const next = new (a.constructor as new (n: number) => T)(capacity);
  next.set(a);
  return next;
}

/**
 * The general path for a line the scanner left: parseTrade's verdict, or nothing for a blank line. An
 * accepted trade is appended to `trades` (true); a rejection goes to `rejections`.
 */
export function judgeLine(i: number, data: Buffer, ends: ArrayLike<number>, receivedAt: number, trades: TradeColumns, keys: KeyTable, rejections: Map<number, Rejection>): boolean {
  const text = lineText(data, ends, i);
  if (isBlank(text)) return false;
  // The line's bytes when its text holds a U+FFFD: parseTrade then tells bytes that are not UTF-8 apart.
  const parsed = parseTrade(text.includes('\uFFFD') ? lineBytes(data, ends, i) : text, receivedAt);
  if (parsed.ok) {
    trades.appendTrade(parsed.trade, keys);
    return true;
  }
  rejections.set(i, parsed);
  return false;
}

/** Line i's text in a piece whose lines end at ends[0..]: without its LF or CRLF. */
export function lineText(data: Buffer, ends: ArrayLike<number>, i: number): string {
  const [start, end] = lineBounds(data, ends, i);
  return data.toString('utf8', start, end);
}

/** Line i's bytes (a view, not a copy), as lineText's text. */
function lineBytes(data: Buffer, ends: ArrayLike<number>, i: number): Buffer {
  const [start, end] = lineBounds(data, ends, i);
  return data.subarray(start, end);
}

function lineBounds(data: Buffer, ends: ArrayLike<number>, i: number): [number, number] {
  const start = i === 0 ? 0 : ends[i - 1];
  let end = ends[i];
  if (end > start && data[end - 1] === 10) end--;
  if (end > start && data[end - 1] === 13) end--;
  return [start, end];
}

function isBlank(line: string): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 13) return false;
  }
  return true;
}

/** Each line's trade as an object, null for a rejected or blank line (for tests and tools; the replay reads the columns). */
export function tradesByLine(piece: ScannedPiece): (Trade | null)[] {
  let t = 0;
  return Array.from(piece.isTrade, (isTrade) => (isTrade === 1 ? piece.trades.at(t++) : null));
}
