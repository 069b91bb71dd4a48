// Replays a recorded JSONL (or JSONL.gz) file of trade messages: the bounded source.
// Streams the file (never all of it in memory), one `trades` event per chunk of lines, so the engine
// pays one async step per few thousand trades, as fast as it can: pacing (--speed N) is a stage of
// its own (pace.ts), after the files of a run are merged into one stream by event time (merge.ts).

import { existsSync, statSync } from 'node:fs';
import { systemClock, type Clock } from '../core/clock.js';
import { CoinstreamError, UsageError } from '../core/errors.js';
import { joinedSpecsHint } from '../core/joined-specs.js';
import { scanHere, scanInThreads, type ScannedItem } from './parallel-scan.js';
import type { ScannedPiece } from './scan-piece.js';
import { capRaw } from '../core/trade.js';
import type { Source, SourceEvent, SourcePosition, TradeOrigins } from './contract.js';
import { DEFAULT_MAX_LINE_BYTES, DamagedFileError, firstLineMark, isGzipFile, plainFirstLineMark, readBytePieces, readFileChunks, ResumePointError, type BytePiece } from './line-reader.js';

export interface ReplayOptions {
  path: string;
  clock?: Clock;
  /** Lines longer than this are rejected as malformed (default 1 MiB). */
  maxLineBytes?: number;
  /**
   * Threads that scan lines beside this one (parallel-scan.ts); default COINSTREAM_PARSE_THREADS, else
   * none. Off by default because on the 2-vCPU machines this is built on it does not pay: the DuckDB
   * writer already has the second core, and a 1M-trade replay took 1.69-1.79 s with one parse thread
   * against 1.63-1.66 s without (3 alternating runs each). Only plain files are read that way: a gzip
   * file is bound by inflating it.
   */
  parseThreads?: number;
}

const UTF8_BOM = [0xef, 0xbb, 0xbf];

/**
 * The file's chunks read from its start, without a leading UTF-8 byte order mark (which editors and
 * tools on Windows write: the first line would otherwise be refused as malformed, as JSON.parse
 * refuses it). `skipped` hears how many bytes were dropped, before the first chunk is handed on, so
 * that positions stay byte offsets into the file. Decided on the first chunk as it is read: no read
 * of its own (for a .gz, no second gunzip of the start).
 */
async function* withoutByteOrderMark(chunks: AsyncIterable<Buffer>, skipped: (bytes: number) => void): AsyncGenerator<Buffer> {
  let first = true;
  for await (const chunk of chunks) {
    if (first && UTF8_BOM.every((b, i) => chunk[i] === b)) {
      skipped(UTF8_BOM.length);
      yield chunk.subarray(UTF8_BOM.length);
    } else {
      yield chunk;
    }
    first = false;
  }
}

export class ReplaySource implements Source {
  readonly name: string;
  readonly bounded = true;
  private readonly clock: Clock;
  private readonly threadsGiven: number | undefined;

  constructor(private readonly options: ReplayOptions) {
    this.name = `replay:${options.path}`;
    this.clock = options.clock ?? systemClock;
    this.threadsGiven = options.parseThreads ?? parseThreadsFromEnv();
    if (!existsSync(options.path)) {
      throw new CoinstreamError('SOURCE_NOT_FOUND', `replay file not found: ${options.path} (give a JSONL or JSONL.gz file of trade messages)${joinedSpecsHint(`replay:${options.path}`, 'source')}`);
    }
    const stat = statSync(options.path);
    if (stat.isDirectory()) {
      throw new CoinstreamError('SOURCE_NOT_FOUND', `replay source is not a file: ${options.path} is a directory (give a JSONL or JSONL.gz file of trade messages)`);
    }
    if (!stat.isFile()) {
      // A replay resumes from a byte offset after a crash (DESIGN.md, Recovery), which a pipe cannot give.
      throw new CoinstreamError('SOURCE_NOT_FOUND', `replay source is not a file: ${options.path} is a pipe or device, and a replay resumes from a byte offset in its file; write the trades to a file first (e.g. zcat x.gz > x.jsonl, or replay the .gz itself)`);
    }
  }

  /** The file, as given. */
  get path(): string {
    return this.options.path;
  }

  /**
   * Whether a finished job has more to read here: the plain file is no longer the size it was where
   * the job left it. Grown (a recording still being written), the job goes on with the new lines;
   * shorter, reading from that position says why it cannot (a replay never reads a changed file as if
   * it were the old one). A .gz (the positions are in its decompressed text) by its compressed size
   * when it was read: `record` writes .gz by default, and a finished job over a growing recording said
   * "already finished" for ever. Positions stored before they carried that size are not looked into.
   */
  moreAfter(position: SourcePosition | undefined): boolean {
    if (position === undefined) return statSync(this.options.path).size > 0; // a file the job never read (or read empty)
    if (!isGzipFile(this.options.path)) {
      // Replaced by a file of the same size, it said "already finished": read, and so refused (exit 2).
      if (position.firstLine !== undefined && plainFirstLineMark(this.options.path) !== position.firstLine) return true;
      return statSync(this.options.path).size !== position.offset;
    }
    return position.gzipBytes !== undefined && statSync(this.options.path).size !== position.gzipBytes;
  }

  /** Parse threads for this file (see ReplayOptions.parseThreads). */
  private parseThreads(gzip: boolean): number {
    return !this.threadsGiven || gzip ? 0 : this.threadsGiven;
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
    const resumedFrom = { offset, line: linesBefore };
    // Every position carries the file's mark, and a stored one must still be the file's. A .gz's also its
    // size as reading starts (if it grew while being read, the next run only reads on to find nothing new).
    let mark: string | undefined;
    let gzip = false;
    let gzipBytes: number | undefined;
    try {
      mark = await firstLineMark(this.options.path);
      gzip = isGzipFile(this.options.path);
      gzipBytes = gzip ? statSync(this.options.path).size : undefined;
    } catch (err) {
      // Unreadable (EACCES, EIO): said as such, not taken for a replaced file (exit 2, "--fresh").
      throw unreadable(this.options.path, err);
    }
    if (from?.firstLine !== undefined && mark !== from.firstLine) throw replacedInPlace(this.name, resumedFrom);
    // (One shape per file: made for every event.)
    const at: (offset: number, line: number) => SourcePosition =
      gzipBytes !== undefined ? (offset, line) => ({ offset, line, firstLine: mark, gzipBytes })
      : mark !== undefined ? (offset, line) => ({ offset, line, firstLine: mark })
      : (offset, line) => ({ offset, line });
    // Fresh memory per read: the pieces, and the lines of the trades in them, are kept as views of it.
    // Read from the start, a file saved with a byte order mark starts after it.
    // Resumed right after a last line read without its line end, the one written since is that line's.
    const chunks = readFileChunks(this.options.path, offset, true, (bytes) => (offset += bytes));
    // A last line still being written is held back (holdUnfinishedLast): set once the file's end is read.
    const tail: { unfinished: UnfinishedLine | null } = { unfinished: null };
    const pieces = holdUnfinishedLast(
      readBytePieces(offset === 0 ? withoutByteOrderMark(chunks, (bytes) => (offset += bytes)) : chunks, maxLineBytes),
      (line) => (tail.unfinished = line),
    );
    const threads = this.parseThreads(gzip);
    const items = threads > 0 ? scanInThreads(pieces, this.clock, threads) : scanHere(pieces, this.clock);
    for (;;) {
      let next: IteratorResult<ScannedItem>;
      try {
        next = await items.next();
      } catch (err) {
        if (err instanceof ResumePointError) throw resumeMismatch(this.name, resumedFrom, err);
        if (err instanceof DamagedFileError) {
          yield { kind: 'damaged', source: this.name, detail: `${err.message} (after line ${linesBefore})${tail.unfinished ? `; the ${tail.unfinished.bytes}-byte line it cut short is left unread` : ''}`, at: this.clock.now() };
          return;
        }
        throw unreadable(this.options.path, err);
      }
      if (next.done || signal.aborted) {
        await items.return(undefined);
        if (next.done && tail.unfinished) yield { kind: 'damaged', source: this.name, detail: unfinishedDetail(linesBefore + 1, tail.unfinished), at: this.clock.now() };
        return;
      }
      const piece = next.value;
      const pieceStart = offset;
      if (piece.kind === 'long-line') {
        const receivedAt = this.clock.now();
        linesBefore++;
        offset += piece.consumed;
        const detail = `line ${linesBefore}: longer than the limit of ${maxLineBytes} bytes (${piece.bytes} bytes; --max-line raises it); only its start is kept`;
        yield { kind: 'rejected', rejected: { receivedAt, source: this.name, reason: 'malformed', detail, raw: capRaw(piece.prefix) }, end: at(offset, linesBefore) };
        continue;
      }
      const { scanned, receivedAt } = piece;
      const firstLine = linesBefore + 1;
      /** After line i of the piece: where reading goes on. */
      const after = (i: number): SourcePosition => at(pieceStart + scanned.lineEnd(i), firstLine + i);
      // Events are runs of the piece's trades between rejected lines: [from, to) of scanned.trades.
      const { trades, isTrade } = scanned;
      let from = 0;
      let to = 0;
      // The run's first line; its lines one by one only once a blank line made them not consecutive.
      let firstOfRun = 0;
      let lineOf: number[] | null = null;
      const flush = (end: SourcePosition): SourceEvent => {
        const run = from === 0 && to === trades.length ? trades : trades.slice(from, to);
        const event: SourceEvent = { kind: 'trades', source: this.name, trades: run, receivedAt, origins: lineOrigins(scanned, lineOf ?? firstOfRun, firstLine, after), end };
        from = to;
        lineOf = null;
        return event;
      };
      for (let i = 0; i < scanned.lines; i++) {
        if (isTrade[i] === 1) {
          if (to === from) firstOfRun = i;
          else if (lineOf === null && i !== firstOfRun + (to - from)) lineOf = Array.from({ length: to - from }, (_, k) => firstOfRun + k);
          lineOf?.push(i);
          to++;
          continue;
        }
        const rejection = scanned.rejections.get(i);
        if (rejection === undefined) continue; // blank line
        if (to > from) yield flush(after(i - 1));
        const rejected = { receivedAt, source: this.name, reason: rejection.reason, detail: `line ${firstLine + i}: ${rejection.detail}`, raw: capRaw(scanned.line(i)) };
        yield { kind: 'rejected', rejected, end: after(i) };
      }
      linesBefore += scanned.lines;
      offset += piece.bytes;
      // The whole piece is read: the last event's end covers any blank lines after its last trade.
      if (to > from) yield flush(at(offset, linesBefore));
    }
  }
}

/**
 * Trade i of an event is line lineOf[i] of the piece (or line lineOf + i, when its lines follow one
 * another), and the piece starts at line `firstLine` of the file.
 */
function lineOrigins(piece: ScannedPiece, lineOf: number[] | number, firstLine: number, after: (i: number) => SourcePosition): TradeOrigins {
  const lineAt = typeof lineOf === 'number' ? (i: number) => lineOf + i : (i: number) => lineOf[i];
  return { raw: (i) => piece.line(lineAt(i)), where: (i) => `line ${firstLine + lineAt(i)}`, position: (i) => after(lineAt(i)) };
}

/** The last line of a file, without its newline, that is not yet a whole JSON value. */
interface UnfinishedLine {
  bytes: number;
}

/**
 * Passes the pieces on, but for a last line without a newline that is not a whole JSON value: a line a
 * writer (`coinstream record`, a copy) has not finished, seen while the file is being written. Read as
 * it is, it was rejected as malformed and its bytes counted as read, so the next run of the job
 * started in the middle of the finished line and was refused ("in the middle of a line"). Held back,
 * the job's position stays at the line's start and the next run reads it whole. A line that never
 * gets finished (a writer killed mid-line) is reported on every run, and stays in the file.
 * A last line that parses (a file saved without a final newline) is read as any other.
 */
async function* holdUnfinishedLast(pieces: AsyncIterable<BytePiece>, held: (line: UnfinishedLine) => void): AsyncGenerator<BytePiece> {
  for await (const piece of pieces) {
    // Only the piece made of the file's last line can lack a final newline.
    if (piece.kind === 'bytes' && piece.data.length > 0 && piece.data[piece.data.length - 1] !== 0x0a && !isBlankOrWholeJson(piece.data)) {
      held({ bytes: piece.data.length });
      continue;
    }
    // One longer than --max-line too: rejected as it stood, its bytes counted as read, the next run
    // started inside it once it was finished and was refused.
    if (piece.kind === 'long-line' && piece.consumed === piece.bytes) {
      held({ bytes: piece.bytes });
      continue;
    }
    yield piece;
  }
}

/** Blank (read as a blank line: skipped), or JSON.parse takes it (read as any line, to be judged). */
function isBlankOrWholeJson(bytes: Buffer): boolean {
  if (/^[ \t\r]*$/.test(bytes.toString('latin1'))) return true;
  try {
    JSON.parse(bytes.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

function unfinishedDetail(line: number, held: UnfinishedLine): string {
  return `line ${line.toLocaleString('en-US')} (its last, ${held.bytes} bytes) has no newline and is not a whole message: left unread, as a writer may still be writing it; the same command reads it from its start once it is whole. If nothing writes the file, the line is damaged: end it with a newline to have it rejected and kept`;
}

/** The stored position does not fit the file as it is now: say so, and what to do (exit 2). */
function resumeMismatch(source: string, from: SourcePosition, err: ResumePointError): CoinstreamError {
  const what = err.fileBytes === null ? 'that byte is in the middle of a line of the file as it is now: it was replaced or edited' : `the file now holds ${err.fileBytes.toLocaleString('en-US')} bytes: it was truncated or replaced`;
  return notTheFileItWas(source, from, what);
}

function unreadable(path: string, err: unknown): CoinstreamError {
  const e = err as NodeJS.ErrnoException;
  return new CoinstreamError('SOURCE_UNREADABLE', `cannot read ${path}: ${e.code ? `${e.code} ` : ''}${e.message}`, false, { cause: err });
}

/** The file's first line is not the one it had when the job stored its position (exit 2). */
function replacedInPlace(source: string, from: SourcePosition): CoinstreamError {
  return notTheFileItWas(source, from, 'its first line is not the one it had then: the file was replaced, rotated or edited');
}

function notTheFileItWas(source: string, from: SourcePosition, what: string): CoinstreamError {
  const where = `byte ${from.offset.toLocaleString('en-US')} (after line ${from.line.toLocaleString('en-US')})`;
  return new CoinstreamError(
    'CONFIG',
    `${source}: the job stopped at ${where} of this file, but ${what} since. Nothing was read or written; start the job over with --fresh, or give new trades as a file of their own`,
  );
}

/** COINSTREAM_PARSE_THREADS: a whole number of parse threads (0: none), or undefined when unset. */
function parseThreadsFromEnv(): number | undefined {
  const text = process.env.COINSTREAM_PARSE_THREADS?.trim();
  if (!text) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new UsageError(`COINSTREAM_PARSE_THREADS="${text}" must be a whole number of threads, 0-64 (0: parse on the replay's own thread)`);
  return n;
}
