// A piece of whole lines judged line by line: each line a trade, a rejection, or blank. The replay's
// events are made from these, whichever thread scanned the lines (parallel-scan.ts).
import { parseTrade, type ParseResult } from '../core/parse-trade.js';
import type { TradeScanner } from '../core/scan-trade.js';
import type { Trade } from '../core/trade.js';

export type Rejection = Extract<ParseResult, { ok: false }>;

/** The verdicts on a piece of whole lines: per line a trade, a rejection, or neither (a blank line). */
export interface ScannedPiece {
  lines: number;
  /** Line i's trade; null for a rejected or blank line. */
  trades: (Trade | null)[];
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
export function scanPiece(data: Buffer, receivedAt: number, scanner: TradeScanner): ScannedPiece {
  const trades: (Trade | null)[] = [];
  const rejections = new Map<number, Rejection>();
  const ends: number[] = [];
  const line = (i: number): string => lineText(data, ends, i);
  for (let start = 0; start < data.length; ) {
    let nl = data.indexOf(10, start);
    if (nl === -1) nl = data.length; // the file's last line, without a newline
    const i = ends.length;
    ends.push(Math.min(nl + 1, data.length));
    const trade = scanner.scan(data, start, nl, receivedAt);
    trades.push(trade);
    if (trade === null) judgeLine(i, line(i), receivedAt, trades, rejections);
    start = nl + 1;
  }
  return { lines: ends.length, trades, rejections, line, lineEnd: (i) => ends[i] };
}

/**
 * The general path for a line the scanner left: parseTrade's verdict, or nothing for a blank line. The
 * verdict goes to trades[i] or rejections.
 */
export function judgeLine(i: number, text: string, receivedAt: number, trades: (Trade | null)[], rejections: Map<number, Rejection>): void {
  if (isBlank(text)) return;
  const parsed = parseTrade(text, receivedAt);
  if (parsed.ok) trades[i] = parsed.trade;
  else rejections.set(i, parsed);
}

/** Line i's text in a piece whose lines end at ends[0..]: without its LF or CRLF. */
export function lineText(data: Buffer, ends: ArrayLike<number>, i: number): string {
  const start = i === 0 ? 0 : ends[i - 1];
  let end = ends[i];
  if (end > start && data[end - 1] === 10) end--;
  if (end > start && data[end - 1] === 13) end--;
  return data.toString('utf8', start, end);
}

function isBlank(line: string): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 13) return false;
  }
  return true;
}
