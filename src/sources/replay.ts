// Replays a recorded JSONL (or JSONL.gz) file of trade messages: the bounded source.
// Streams the file (never all of it in memory), one `trades` event per chunk of lines, so the engine
// pays one async step per few thousand trades, as fast as it can: pacing (--speed N) is a stage of
// its own (pace.ts), after the files of a run are merged into one stream by event time (merge.ts).

import { existsSync, statSync } from 'node:fs';
import { systemClock, type Clock } from '../core/clock.js';
import { CoinstreamError } from '../core/errors.js';
import { parseTrade, type ParseResult } from '../core/parse-trade.js';
import { TradeScanner } from '../core/scan-trade.js';
import { capRaw, type Trade } from '../core/trade.js';
import type { Source, SourceEvent, SourcePosition, TradeOrigins } from './contract.js';
import { DEFAULT_MAX_LINE_BYTES, DamagedFileError, readBytePieces, readFileChunks, type BytePiece } from './line-reader.js';

export interface ReplayOptions {
  path: string;
  clock?: Clock;
  /** Lines longer than this are rejected as malformed (default 1 MiB). */
  maxLineBytes?: number;
}

export class ReplaySource implements Source {
  readonly name: string;
  readonly bounded = true;
  private readonly clock: Clock;

  constructor(private readonly options: ReplayOptions) {
    this.name = `replay:${options.path}`;
    this.clock = options.clock ?? systemClock;
    if (!existsSync(options.path)) {
      throw new CoinstreamError('SOURCE_NOT_FOUND', `replay file not found: ${options.path} (give a JSONL or JSONL.gz file of trade messages)`);
    }
    if (!statSync(options.path).isFile()) {
      throw new CoinstreamError('SOURCE_NOT_FOUND', `replay source is not a file: ${options.path}`);
    }
  }

  /**
   * Reads the file from `from` (a position an earlier run stored; the start of the file without one).
   * Events come in file order, each with the position after its last line (`end`), so that a crash
   * anywhere can resume right after what was stored: a trades event is cut short before a rejected
   * line instead of being sent after it.
   */
  async *events(signal: AbortSignal, from?: SourcePosition): AsyncGenerator<SourceEvent> {
    const maxLineBytes = this.options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    // Where the current piece starts: its byte offset, and the lines before it.
    let offset = from?.offset ?? 0;
    let linesBefore = from?.line ?? 0;
    const pieces = readBytePieces(readFileChunks(this.options.path, offset), maxLineBytes);
    const scanner = new TradeScanner();
    for (;;) {
      let next: IteratorResult<BytePiece>;
      try {
        next = await pieces.next();
      } catch (err) {
        if (err instanceof DamagedFileError) {
          yield { kind: 'damaged', source: this.name, detail: `${err.message} (after line ${linesBefore})`, at: this.clock.now() };
          return;
        }
        const e = err as NodeJS.ErrnoException;
        throw new CoinstreamError('SOURCE_UNREADABLE', `cannot read ${this.options.path}: ${e.code ? `${e.code} ` : ''}${e.message}`, false, { cause: err });
      }
      if (next.done || signal.aborted) return;
      const piece = next.value;
      const pieceStart = offset;
      const receivedAt = this.clock.now();
      if (piece.kind === 'long-line') {
        linesBefore++;
        offset += piece.consumed;
        const detail = `line ${linesBefore}: longer than the limit of ${maxLineBytes} bytes (${piece.bytes} bytes; --max-line raises it); only its start is kept`;
        yield { kind: 'rejected', rejected: { receivedAt, source: this.name, reason: 'malformed', detail, raw: capRaw(piece.prefix) }, end: { offset, line: linesBefore } };
        continue;
      }
      const scanned = scanPiece(piece.data, receivedAt, scanner);
      const firstLine = linesBefore + 1;
      /** After line i of the piece: where reading goes on. */
      const after = (i: number): SourcePosition => ({ offset: pieceStart + scanned.lineEnd(i), line: firstLine + i });
      let batch: Trade[] = [];
      let lineOf: number[] = [];
      const flush = (end: SourcePosition): SourceEvent => {
        const event: SourceEvent = { kind: 'trades', source: this.name, trades: batch, receivedAt, origins: lineOrigins(scanned, lineOf, firstLine, after), end };
        batch = [];
        lineOf = [];
        return event;
      };
      for (let i = 0; i < scanned.lines; i++) {
        const trade = scanned.trades[i];
        if (trade !== null) {
          batch.push(trade);
          lineOf.push(i);
          continue;
        }
        const rejection = scanned.rejections.get(i);
        if (rejection === undefined) continue; // blank line
        if (batch.length > 0) yield flush(after(i - 1));
        const rejected = { receivedAt, source: this.name, reason: rejection.reason, detail: `line ${firstLine + i}: ${rejection.detail}`, raw: capRaw(scanned.line(i)) };
        yield { kind: 'rejected', rejected, end: after(i) };
      }
      linesBefore += scanned.lines;
      offset += piece.data.length;
      // The whole piece is read: the last event's end covers any blank lines after its last trade.
      if (batch.length > 0) yield flush({ offset, line: linesBefore });
    }
  }
}

/** Trade i of a batch is line lineOf[i] of the piece, which starts at line `firstLine` of the file. */
function lineOrigins(piece: ScannedPiece, lineOf: number[], firstLine: number, after: (i: number) => SourcePosition): TradeOrigins {
  return { raw: (i) => piece.line(lineOf[i]), where: (i) => `line ${firstLine + lineOf[i]}`, position: (i) => after(lineOf[i]) };
}

type Rejection = Extract<ParseResult, { ok: false }>;

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
 * The piece's bytes are copied first: a piece is a view of the reader's memory, reused after the next
 * read, and a trade found late further on still needs its line for rejected_trades.
 */
export function scanPiece(view: Buffer, receivedAt: number, scanner: TradeScanner): ScannedPiece {
  const data = Buffer.from(view);
  const trades: (Trade | null)[] = [];
  const rejections = new Map<number, Rejection>();
  const ends: number[] = [];
  /** Line i's text: the bytes before its newline, and before a CR there. */
  const line = (i: number): string => {
    const start = i === 0 ? 0 : ends[i - 1];
    let end = ends[i];
    if (end > start && data[end - 1] === 10) end--;
    if (end > start && data[end - 1] === 13) end--;
    return data.toString('utf8', start, end);
  };
  for (let start = 0; start < data.length; ) {
    let nl = data.indexOf(10, start);
    if (nl === -1) nl = data.length; // the file's last line, without a newline
    const i = ends.length;
    ends.push(Math.min(nl + 1, data.length));
    const trade = scanner.scan(data, start, nl, receivedAt);
    trades.push(trade);
    if (trade === null) {
      const text = line(i);
      if (!isBlank(text)) {
        const parsed = parseTrade(text, receivedAt);
        if (parsed.ok) trades[i] = parsed.trade;
        else rejections.set(i, parsed);
      }
    }
    start = nl + 1;
  }
  return { lines: ends.length, trades, rejections, line, lineEnd: (i) => ends[i] };
}

function isBlank(line: string): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 13) return false;
  }
  return true;
}
