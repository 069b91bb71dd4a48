// Reads a JSONL (or JSONL.gz) file as arrays of lines, streaming: never the whole file in memory.
//
// This is the replay hot path, so it is written around two measured costs on a 2-core VM:
// - strings over 128 KiB go to V8's large-object space, where every allocation maps fresh pages:
//   decoding 157 MiB took 750 ms in 256 KiB strings and 19 ms in 64 KiB strings;
// - a fresh Buffer per read (what fs.createReadStream does) is garbage for the collector and a page
//   fault per page; two buffers, reused, cost neither.

import { createReadStream, openSync, readSync, closeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';

/** Bytes per read: the reader waits on the disk thread about a thousand times per GiB. */
const READ_CHUNK_BYTES = 1 << 20;
/** Bytes per decoded string (see above: below V8's large-object threshold). */
const DECODE_PIECE_BYTES = 1 << 16;

export function isGzipFile(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(2);
    return readSync(fd, head, 0, 2, 0) === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    closeSync(fd);
  }
}

const NEWLINE = Buffer.from('\n');

/** How much of a file's start its mark (firstLineMark) looks at. */
const MARK_BYTES = 4096;

/**
 * A short text that tells the file's first line (at most its first 4 KiB) from another's: its length
 * and an FNV-1a hash of its bytes, decompressed for a .gz. Undefined while the file has no whole
 * first line that long (one still being written would change). A replay position carries it, so a
 * file replaced or rotated in place (logrotate's copytruncate, then new lines) is told from the one
 * the job read even when the stored offset happens to fall where a line starts in the new one.
 */
export async function firstLineMark(path: string): Promise<string | undefined> {
  return markOf(await readHead(path, MARK_BYTES));
}

/** firstLineMark of a plain (not gzip) file, read at once: for the check a finished job makes before it reads. */
export function plainFirstLineMark(path: string): string | undefined {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(MARK_BYTES);
    return markOf(head.subarray(0, readSync(fd, head, 0, MARK_BYTES, 0)));
  } finally {
    closeSync(fd);
  }
}

function markOf(head: Buffer): string | undefined {
  const newline = head.indexOf(10);
  const end = newline >= 0 ? newline + 1 : head.length === MARK_BYTES ? MARK_BYTES : -1;
  if (end <= 0) return undefined;
  let hash = 0x811c9dc5;
  for (let i = 0; i < end; i++) hash = Math.imul(hash ^ head[i], 0x01000193);
  return `${end}:${(hash >>> 0).toString(16).padStart(8, '0')}`;
}

/** Up to `bytes` of the file's (decompressed) start; less for a shorter or damaged file. */
async function readHead(path: string, bytes: number): Promise<Buffer> {
  if (!isGzipFile(path)) {
    const file = await open(path, 'r');
    try {
      const head = Buffer.alloc(bytes);
      const { bytesRead } = await file.read(head, 0, bytes, 0);
      return head.subarray(0, bytesRead);
    } finally {
      await file.close();
    }
  }
  const parts: Buffer[] = [];
  let got = 0;
  try {
    for await (const chunk of gunzipChunks(path)) {
      parts.push(chunk);
      got += chunk.length;
      if (got >= bytes) break;
    }
  } catch (err) {
    if (!(err instanceof DamagedFileError)) throw err; // what decompressed is the head
  }
  return Buffer.concat(parts).subarray(0, bytes);
}

/** Lines longer than this many bytes are rejected by default (`--max-line`): a trade message is ~200. */
export const DEFAULT_MAX_LINE_BYTES = 1 << 20;
/** How much of an over-long line is kept for rejected_trades (the raw column holds 4 KiB). */
const LONG_LINE_PREFIX_BYTES = 4096;

/**
 * A line longer than the limit. Only its first bytes were kept, so reading it took bounded memory
 * however long it was (a 600 MB line used to need 1.35 GB and then failed anyway).
 */
export interface LongLine {
  kind: 'long-line';
  prefix: string;
  /** The whole line's length in bytes, without its newline. */
  bytes: number;
  /** Bytes read for it: the line and its newline (none at the end of a file without one). */
  consumed: number;
}

/** Whole lines of text, each ending with a newline; `bytes` were read for them (a missing last newline not counted). */
export interface TextRun {
  kind: 'text';
  text: string;
  bytes: number;
}

/** Whole lines of text, or one over-long line. */
export type TextPiece = TextRun | LongLine;

/**
 * A compressed file that cannot be decompressed past `offset` (compressed bytes): truncated by a
 * killed writer, or corrupt. Everything before it was read.
 */
export class DamagedFileError extends Error {
  constructor(readonly path: string, readonly offset: number, cause: Error) {
    super(`${path} is damaged at compressed byte ${offset} (${cause.message}); every line before that was read`, { cause });
    this.name = 'DamagedFileError';
  }
}

/**
 * Reading was to start at a byte offset (where a resumed job left the file) that is no place a line
 * starts in the file as it is now: past its end (`fileBytes`: its size), or in the middle of a line
 * (`fileBytes` null). The file was truncated, replaced or edited since that position was stored.
 */
export class ResumePointError extends Error {
  constructor(readonly path: string, readonly offset: number, readonly fileBytes: number | null) {
    super(fileBytes === null ? `byte ${offset} of ${path} is in the middle of a line` : `${path} has ${fileBytes} bytes, fewer than ${offset}`);
    this.name = 'ResumePointError';
  }
}

/**
 * Where reading may start, given the byte before `offset` and the ones at it: 0 bytes on when the one
 * before ends a line; after a last line read without its line end (a file saved without one, or a
 * writer that had not written it yet), past the line end written since, "\n" (1) or "\r\n" (2): it
 * ends that line, and read as a line of its own it shifted every later line number by one (or,
 * "\r\n", was refused as the middle of a line). 'wait': only the "\r" of it is there yet. null: the
 * offset is inside a line.
 */
function lineStartAfter(before: number, at: number | undefined, next: number | undefined): number | 'wait' | null {
  if (before === NEWLINE[0]) return 0;
  if (at === NEWLINE[0]) return 1;
  if (at === CR && next === NEWLINE[0]) return 2;
  if (at === CR && next === undefined) return 'wait';
  return null;
}

const CR = 13;

/**
 * A file's bytes, chunk by chunk, gunzipped when it is gzip (by content, not by name). A gzip file that
 * is truncated or corrupt yields what decompresses, then throws DamagedFileError.
 *
 * By default a chunk is only valid until the next one is asked for: plain files are read into two
 * buffers in turn, the next read running while the caller works on the current chunk (a fresh buffer per
 * read is garbage for the collector and a page fault per page). With `fresh`, every chunk is memory of
 * its own that stays as it is: for a caller that keeps views of it (the replay keeps each line's bytes
 * for as long as its trades may still need their text), where copying the views would cost more.
 */
export async function* readFileChunks(path: string, startOffset = 0, fresh = false, skippedLineEnd?: (bytes: number) => void): AsyncGenerator<Buffer> {
  if (isGzipFile(path)) {
    // zlib hands out a new buffer per chunk: fresh either way.
    yield* skipBytes(gunzipChunks(path), startOffset, path, skippedLineEnd);
    return;
  }
  const file = await open(path, 'r');
  try {
    // A resumed job's position must still be where a line starts: else its lines would be read from
    // the middle of one (a replaced file), or not at all (a truncated one), and the job would go on
    // as if nothing were amiss. Throws ResumePointError.
    if (startOffset > 0) {
      const { size } = await file.stat();
      if (startOffset > size) throw new ResumePointError(path, startOffset, size);
      if (startOffset < size) {
        const around = Buffer.alloc(3);
        const { bytesRead } = await file.read(around, 0, 3, startOffset - 1);
        const skip = lineStartAfter(around[0], around[1], bytesRead > 2 ? around[2] : undefined);
        if (skip === null) throw new ResumePointError(path, startOffset, null);
        if (skip === 'wait') return;
        if (skip > 0) skippedLineEnd?.(skip);
        startOffset += skip;
      }
    }
    const buffers = [Buffer.allocUnsafeSlow(READ_CHUNK_BYTES), Buffer.allocUnsafeSlow(READ_CHUNK_BYTES)];
    let turn = 0;
    let at = startOffset;
    let pending = file.read(buffers[turn], 0, READ_CHUNK_BYTES, at);
    for (;;) {
      const { bytesRead, buffer } = await pending;
      if (bytesRead === 0) return;
      at += bytesRead;
      turn ^= 1;
      if (fresh) buffers[turn] = Buffer.allocUnsafeSlow(READ_CHUNK_BYTES);
      pending = file.read(buffers[turn], 0, READ_CHUNK_BYTES, at);
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await file.close();
  }
}

/**
 * A compressed stream cannot be seeked: its first `count` decompressed bytes are read and dropped. As
 * for a plain file, they must end where a line ends, and the stream must hold that many (ResumePointError).
 */
async function* skipBytes(chunks: AsyncIterable<Buffer>, count: number, path: string, skippedLineEnd?: (bytes: number) => void): AsyncGenerator<Buffer> {
  let left = count;
  let lastSkipped = NEWLINE[0];
  let checked = count === 0;
  /** A chunk ending right after the skipped bytes' "\r": its "\n" may start the next one. */
  let carry: Buffer | null = null;
  for await (const raw of chunks) {
    const chunk: Buffer = carry ? Buffer.concat([carry, raw]) : raw;
    carry = null;
    if (left >= chunk.length) {
      left -= chunk.length;
      if (chunk.length > 0) lastSkipped = chunk[chunk.length - 1];
      continue;
    }
    if (!checked) {
      const skip = lineStartAfter(left > 0 ? chunk[left - 1] : lastSkipped, chunk[left], chunk[left + 1]);
      if (skip === null) throw new ResumePointError(path, count, null);
      if (skip === 'wait') {
        carry = chunk;
        continue;
      }
      checked = true;
      if (skip > 0) skippedLineEnd?.(skip);
      left += skip;
      if (left >= chunk.length) {
        left = 0;
        continue;
      }
    }
    yield left > 0 ? chunk.subarray(left) : chunk;
    left = 0;
  }
  if (carry) return; // the stream ends inside the line end: nothing to read yet
  if (left > 0) throw new ResumePointError(path, count, count - left);
}

async function* gunzipChunks(path: string): AsyncGenerator<Buffer> {
  const input = createReadStream(path, { highWaterMark: READ_CHUNK_BYTES });
  const gunzip = createGunzip();
  // pipe() does not forward a read error: do it, so that an unreadable file fails instead of hanging.
  input.on('error', (err) => gunzip.destroy(err));
  input.pipe(gunzip);
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
  } catch (err) {
    // zlib's own errors (Z_BUF_ERROR: unexpected end of file, Z_DATA_ERROR: corrupt) mean damage; an
    // I/O error reading the file is not damage and goes up as it is.
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('Z_')) throw new DamagedFileError(path, gunzip.bytesWritten, err as Error);
    throw err;
  } finally {
    input.destroy();
  }
}

type Chunks = AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array>;

/**
 * Splits chunks of bytes into lines (LF or CRLF), one array of lines per piece of text. Over-long lines
 * are skipped and reported to `onLongLine`.
 */
export async function* readLineChunks(chunks: Chunks, options: { maxLineBytes?: number; onLongLine?: (line: LongLine) => void } = {}): AsyncGenerator<string[]> {
  for await (const piece of readTextPieces(chunks, options.maxLineBytes)) {
    if (piece.kind === 'text') yield splitLines(piece.text, []);
    else options.onLongLine?.(piece);
  }
}

/**
 * Cuts chunks of bytes into pieces of text made of whole lines, each ending with a newline. A last
 * line without a newline gets one. A line of more than `maxLineBytes` comes out as a LongLine, in
 * order, and costs no more memory than its prefix. If the chunks fail (a damaged file), the partial
 * line read so far comes out first, then the error.
 */
export async function* readTextPieces(chunks: Chunks, maxLineBytes = DEFAULT_MAX_LINE_BYTES): AsyncGenerator<TextPiece> {
  for await (const piece of readBytePieces(chunks, maxLineBytes)) {
    if (piece.kind === 'long-line') yield piece;
    else yield { kind: 'text', text: piece.data.toString('utf8') + (piece.data[piece.data.length - 1] === 10 ? '' : '\n'), bytes: piece.data.length };
  }
}

/** Whole lines as bytes: each ends with a newline, but for the last line of a file that has none. */
export interface ByteRun {
  kind: 'bytes';
  /** A view of the reader's memory: valid only until the next piece is asked for. Its length is the bytes read for it. */
  data: Buffer;
}

/** Whole lines as bytes, or one over-long line. */
export type BytePiece = ByteRun | LongLine;

/**
 * readTextPieces without the decoding: pieces of whole lines as bytes, cut at newline bytes (0x0A
 * never occurs inside a multi-byte UTF-8 sequence, so no character is split). A partial line at the end
 * of a chunk is copied and carried over, so the caller may reuse a chunk's memory once the next one is
 * asked for; a piece itself is a view of the chunk, valid until then.
 */
export async function* readBytePieces(chunks: Chunks, maxLineBytes = DEFAULT_MAX_LINE_BYTES): AsyncGenerator<BytePiece> {
  const pending = new PendingLine(maxLineBytes);
  try {
    for await (const data of chunks) {
      const chunk = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      let from = 0;
      if (!pending.empty) {
        const firstNewline = chunk.indexOf(10);
        if (firstNewline === -1) {
          pending.append(chunk, 0, chunk.length);
          continue;
        }
        pending.append(chunk, 0, firstNewline);
        yield pending.take(true);
        from = firstNewline + 1;
      }
      const lastNewline = chunk.lastIndexOf(10);
      const end = lastNewline >= from ? lastNewline + 1 : from;
      yield* wholeLines(chunk, from, end, maxLineBytes);
      if (end < chunk.length) pending.append(chunk, end, chunk.length);
    }
  } catch (err) {
    // The line cut short by the damage is still a line the caller must judge, before the error.
    if (!pending.empty) yield pending.take(false);
    throw err;
  }
  if (!pending.empty) yield pending.take(false);
}

/** Pieces of bytes for the whole lines in chunk[from, end), and a LongLine for each too long. */
function* wholeLines(chunk: Buffer, from: number, end: number, maxLineBytes: number): Generator<BytePiece> {
  while (from < end) {
    // Up to the last newline within the next piece; a line longer than a piece is one piece.
    // Pieces of ~400 lines also keep what is alive at a young-generation GC small.
    let to = end;
    if (to - from > DECODE_PIECE_BYTES) {
      const nl = chunk.lastIndexOf(10, from + DECODE_PIECE_BYTES - 1);
      to = nl >= from ? nl + 1 : chunk.indexOf(10, from + DECODE_PIECE_BYTES) + 1;
    }
    // A piece no longer than the limit cannot hold a line longer than it: the usual case costs one compare.
    if (to - from - 1 <= maxLineBytes) yield byteRun(chunk, from, to);
    else yield* splitOutLongLines(chunk, from, to, maxLineBytes);
    from = to;
  }
}

function* splitOutLongLines(chunk: Buffer, from: number, to: number, maxLineBytes: number): Generator<BytePiece> {
  let runStart = from;
  for (let lineStart = from; lineStart < to; ) {
    const nl = chunk.indexOf(10, lineStart);
    if (nl - lineStart > maxLineBytes) {
      if (lineStart > runStart) yield byteRun(chunk, runStart, lineStart);
      yield { kind: 'long-line', prefix: chunk.toString('utf8', lineStart, lineStart + LONG_LINE_PREFIX_BYTES), bytes: nl - lineStart, consumed: nl - lineStart + 1 };
      runStart = nl + 1;
    }
    lineStart = nl + 1;
  }
  if (runStart < to) yield byteRun(chunk, runStart, to);
}

function byteRun(chunk: Buffer, from: number, to: number): ByteRun {
  return { kind: 'bytes', data: chunk.subarray(from, to) };
}

/** The start of a line that has not ended yet: copied pieces, or only a prefix once it is too long. */
class PendingLine {
  private pieces: Buffer[] = [];
  private bytes = 0;
  /** Set once the line is longer than the limit: from then on only its length grows. */
  private prefix: Buffer | null = null;

  constructor(private readonly maxLineBytes: number) {}

  get empty(): boolean {
    return this.bytes === 0 && this.prefix === null && this.pieces.length === 0;
  }

  append(chunk: Buffer, from: number, to: number): void {
    if (this.prefix === null && this.bytes + (to - from) > this.maxLineBytes) {
      // An own copy of the first bytes: the chunk's memory is reused for the next read.
      this.prefix = Buffer.from(Buffer.concat([...this.pieces, chunk.subarray(from, to)]).subarray(0, LONG_LINE_PREFIX_BYTES));
      this.pieces = [];
    } else if (this.prefix === null) {
      this.pieces.push(Buffer.from(chunk.subarray(from, to)));
    }
    this.bytes += to - from;
  }

  /**
   * The line, with a newline (joined once its end arrived, so many small chunks cost linear time).
   * `ended`: its newline was read (not so for the last line of a file without one, or one cut short).
   */
  take(ended: boolean): BytePiece {
    const consumed = this.bytes + (ended ? 1 : 0);
    const out: BytePiece =
      this.prefix !== null
        ? { kind: 'long-line', prefix: this.prefix.toString('utf8'), bytes: this.bytes, consumed }
        : { kind: 'bytes', data: Buffer.concat(ended ? [...this.pieces, NEWLINE] : this.pieces) };
    this.pieces = [];
    this.bytes = 0;
    this.prefix = null;
    return out;
  }
}

/** Appends the lines of a text that ends with a newline, without their LF or CRLF. */
export function splitLines(text: string, lines: string[]): string[] {
  let from = 0;
  for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', from)) {
    lines.push(text.slice(from, nl > from && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl));
    from = nl + 1;
  }
  return lines;
}
