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

/**
 * A file's bytes, chunk by chunk, gunzipped when it is gzip (by content, not by name). A chunk is only
 * valid until the next one is asked for: plain files are read into two buffers in turn, the next read
 * running while the caller works on the current chunk.
 */
export async function* readFileChunks(path: string): AsyncGenerator<Buffer> {
  if (isGzipFile(path)) {
    yield* createReadStream(path, { highWaterMark: READ_CHUNK_BYTES }).pipe(createGunzip()) as AsyncIterable<Buffer>;
    return;
  }
  const file = await open(path, 'r');
  try {
    const buffers = [Buffer.allocUnsafeSlow(READ_CHUNK_BYTES), Buffer.allocUnsafeSlow(READ_CHUNK_BYTES)];
    let turn = 0;
    let pending = file.read(buffers[turn], 0, READ_CHUNK_BYTES, null);
    for (;;) {
      const { bytesRead, buffer } = await pending;
      if (bytesRead === 0) return;
      turn ^= 1;
      pending = file.read(buffers[turn], 0, READ_CHUNK_BYTES, null);
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await file.close();
  }
}

type Chunks = AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array>;

/** Splits chunks of bytes into lines (LF or CRLF), one array of lines per piece of text. */
export async function* readLineChunks(chunks: Chunks): AsyncGenerator<string[]> {
  for await (const text of readTextPieces(chunks)) yield splitLines(text, []);
}

/**
 * Cuts chunks of bytes into pieces of text made of whole lines, each ending with a newline. Text is
 * cut at newline bytes: 0x0A never occurs inside a multi-byte UTF-8 sequence, so no character is
 * split. A partial line at the end of a chunk is copied and carried over, so the caller may reuse a
 * chunk's memory once the next one is asked for. A last line without a newline gets one.
 */
export async function* readTextPieces(chunks: Chunks): AsyncGenerator<string> {
  // The start of a line that has not ended yet, as copied pieces (joined once its newline arrives, so
  // a long line that comes in many small chunks costs linear, not quadratic, time).
  let carry: Buffer[] = [];
  for await (const data of chunks) {
    const chunk = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    let from = 0;
    if (carry.length > 0) {
      const firstNewline = chunk.indexOf(10);
      if (firstNewline === -1) {
        carry.push(Buffer.from(chunk));
        continue;
      }
      carry.push(chunk.subarray(0, firstNewline + 1));
      yield Buffer.concat(carry).toString('utf8');
      carry = [];
      from = firstNewline + 1;
    }
    const lastNewline = chunk.lastIndexOf(10);
    const end = lastNewline >= from ? lastNewline + 1 : from;
    while (from < end) {
      // Up to the last newline within the next piece; a line longer than a piece is decoded whole.
      // Pieces of ~400 lines also keep what is alive at a young-generation GC small.
      let to = end;
      if (to - from > DECODE_PIECE_BYTES) {
        const nl = chunk.lastIndexOf(10, from + DECODE_PIECE_BYTES - 1);
        to = nl >= from ? nl + 1 : chunk.indexOf(10, from + DECODE_PIECE_BYTES) + 1;
      }
      yield chunk.toString('utf8', from, to);
      from = to;
    }
    if (end < chunk.length) carry.push(Buffer.from(chunk.subarray(end)));
  }
  if (carry.length > 0) yield Buffer.concat(carry).toString('utf8') + '\n';
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
