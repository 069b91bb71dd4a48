import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/core/random.js';
import { DamagedFileError, readFileChunks, readLineChunks, readTextPieces, ResumePointError, type LongLine, type TextPiece } from '../../src/sources/line-reader.js';

const dir = mkdtempSync(join(tmpdir(), 'coinstream-lines-'));

async function collect(chunks: AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array>): Promise<string[]> {
  const lines: string[] = [];
  for await (const batch of readLineChunks(chunks)) lines.push(...batch);
  return lines;
}

/** Yields `bytes` in the given piece sizes through ONE reused buffer, as readFileChunks does. */
async function* throughReusedBuffer(bytes: Buffer, sizes: () => number): AsyncGenerator<Buffer> {
  const scratch = Buffer.alloc(bytes.length + 1);
  for (let from = 0; from < bytes.length; ) {
    const n = Math.min(sizes(), bytes.length - from);
    bytes.copy(scratch, 0, from, from + n);
    yield scratch.subarray(0, n);
    scratch.fill(0x58); // 'X': whatever the reader kept without copying is now wrong
    from += n;
  }
}

describe('readLineChunks', () => {
  it('splits LF and CRLF lines and reassembles UTF-8 split across chunks', async () => {
    const text = Buffer.from('a\r\nb€c\nlast');
    const euro = text.indexOf(0xe2);
    expect(await collect([text.subarray(0, euro + 1), text.subarray(euro + 1)])).toEqual(['a', 'b€c', 'last']);
  });

  it('gives back every line of random text cut at random places, even when chunks are reused', async () => {
    const random = seededRandom(7);
    const words = ['€', 'ü', '𝄞', 'btc', '{"a":1}', ' ', '\r'];
    const lines: string[] = [];
    // Some lines far longer than the 64 KiB decode piece, some empty, most short.
    for (let i = 0; i < 2000; i++) {
      const len = random() < 0.005 ? 20_000 + Math.floor(random() * 30_000) : Math.floor(random() * 40);
      let line = '';
      for (let j = 0; j < len; j++) line += words[Math.floor(random() * words.length)];
      lines.push(line.replace(/\r+$/, ''));
    }
    const bytes = Buffer.from(lines.join('\n') + '\n');
    expect(bytes.length).toBeGreaterThan(3 * 65536);
    for (const maxPiece of [64, 4096, 200_000, 1 << 20]) {
      const got = await collect(throughReusedBuffer(bytes, () => 1 + Math.floor(random() * maxPiece)));
      expect(got.length).toBe(lines.length);
      expect(got).toEqual(lines);
    }
  });

  it('keeps a last line without a newline and a chunk without any newline', async () => {
    expect(await collect([Buffer.from('ab'), Buffer.from('cd'), Buffer.from('e\nf')])).toEqual(['abcde', 'f']);
  });
});

describe('readFileChunks', () => {
  it('reads plain and gzip files to the same bytes, across many reads', async () => {
    const random = seededRandom(3);
    const body = Buffer.from(Array.from({ length: 150_000 }, (_, i) => `${i},${random()}`).join('\n') + '\n');
    expect(body.length).toBeGreaterThan(2 * (1 << 20)); // more than two 1 MiB reads: both buffers are reused
    writeFileSync(join(dir, 'x.jsonl'), body);
    writeFileSync(join(dir, 'x.jsonl.gz'), gzipSync(body));
    const expected = body.toString().split('\n').slice(0, -1);
    expect(await collect(readFileChunks(join(dir, 'x.jsonl')))).toEqual(expected);
    expect(await collect(readFileChunks(join(dir, 'x.jsonl.gz')))).toEqual(expected);
  });

  it('starts at a resumed position only where a line starts and within the file, plain or gzip', async () => {
    // Long enough that the gzip stream comes in several chunks: the start falls inside a later one.
    const lines = Array.from({ length: 40_000 }, (_, i) => `{"n":${i}}`);
    const body = Buffer.from(lines.join('\n') + '\n');
    const plain = join(dir, 'resume.jsonl');
    const gz = join(dir, 'resume.jsonl.gz');
    writeFileSync(plain, body);
    writeFileSync(gz, gzipSync(body));
    const after = (n: number) => Buffer.byteLength(lines.slice(0, n).join('\n') + '\n'); // the offset after line n
    for (const file of [plain, gz]) {
      expect(await collect(readFileChunks(file, after(30_000)))).toEqual(lines.slice(30_000));
      expect(await collect(readFileChunks(file, body.length))).toEqual([]); // the end: nothing more, no error
      const midLine = readFileChunks(file, after(30_000) + 3);
      await expect(collect(midLine)).rejects.toThrow(ResumePointError);
      await expect(collect(readFileChunks(file, after(30_000) + 3))).rejects.toMatchObject({ fileBytes: null, offset: after(30_000) + 3 });
      await expect(collect(readFileChunks(file, body.length + 10))).rejects.toMatchObject({ fileBytes: body.length, offset: body.length + 10 });
    }
    // A last line read without its line end, then the line end and more lines written: the stored
    // offset (the end of that line) is still a place to go on from, past the line end, which ends that
    // line. Read as an empty line of its own it shifted every later line number by one, and a "\r\n"
    // was refused as the middle of a line.
    const upTo = Buffer.byteLength('{"n":1}\n{"n":2}');
    for (const [name, rest, skipped, read] of [
      ['grown-lf', '\n{"n":3}\n', 1, ['{"n":3}']],
      ['grown-crlf', '\r\n{"n":3}\r\n', 2, ['{"n":3}']],
      ['grown-cr-only', '\r', 0, []], // only the "\r" so far: nothing to read yet
    ] as const) {
      for (const gz of [false, true]) {
        const file = join(dir, `${name}.jsonl${gz ? '.gz' : ''}`);
        const text = '{"n":1}\n{"n":2}' + rest;
        writeFileSync(file, gz ? gzipSync(text) : text);
        let told = 0;
        expect(await collect(readFileChunks(file, upTo, false, (bytes) => (told += bytes))), file).toEqual(read);
        expect(told, file).toBe(skipped);
      }
    }
  });
});

/** The pieces as lines, with each over-long line as `<long N bytes: prefix>`. */
async function pieces(chunks: AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array>, maxLineBytes: number): Promise<string[]> {
  const out: string[] = [];
  for await (const p of readTextPieces(chunks, maxLineBytes)) {
    if (p.kind === 'text') out.push(...p.text.slice(0, -1).split('\n'));
    else out.push(`<long ${p.bytes} bytes: ${p.prefix.slice(0, 10)}>`);
  }
  return out;
}

describe('lines over the limit', () => {
  it('come out in order as LongLine, wherever the chunk boundaries fall', async () => {
    const long = 'x'.repeat(50);
    const text = Buffer.from(['a', long, 'b', long + 'y', 'c', long].join('\n'));
    const expected = ['a', '<long 50 bytes: xxxxxxxxxx>', 'b', '<long 51 bytes: xxxxxxxxxx>', 'c', '<long 50 bytes: xxxxxxxxxx>'];
    const random = seededRandom(5);
    for (let round = 0; round < 50; round++) {
      expect(await pieces(throughReusedBuffer(text, () => 1 + Math.floor(random() * 40)), 20)).toEqual(expected);
    }
    expect(await pieces([text], 20)).toEqual(expected);
    // At the limit exactly, a line is fine.
    expect(await pieces([Buffer.from('x'.repeat(20) + '\n')], 20)).toEqual(['x'.repeat(20)]);
  });

  it('cost their prefix, not their length: a 600 MB line, then the rest of the file', async () => {
    // 600 chunks of 1 MiB through one reused buffer; copying the line whole used to fail with
    // "Cannot create a string longer than 0x1fffffe8" at 1.35 GB RSS, never reaching the next line.
    const chunk = Buffer.alloc(1 << 20, 0x41);
    const before = process.memoryUsage().rss;
    let peak = before;
    async function* huge(): AsyncGenerator<Buffer> {
      yield Buffer.from('{"first":1}\n');
      for (let i = 0; i < 600; i++) {
        peak = Math.max(peak, process.memoryUsage().rss);
        yield chunk;
      }
      yield Buffer.from('\n{"after":2}\n');
    }
    const out: TextPiece[] = [];
    for await (const p of readTextPieces(huge())) out.push(p);
    expect(out[0]).toEqual({ kind: 'text', text: '{"first":1}\n', bytes: 12 });
    const long = out[1] as LongLine;
    expect(long.kind).toBe('long-line');
    expect(long.bytes).toBe(600 * (1 << 20));
    expect(long.prefix).toBe('A'.repeat(4096));
    expect(out[2]).toEqual({ kind: 'text', text: '{"after":2}\n', bytes: 12 });
    expect(out).toHaveLength(3);
    expect(peak - before).toBeLessThan(200 << 20); // the line itself is 600 MiB
  });

  it('are skipped by readLineChunks and reported', async () => {
    const seen: LongLine[] = [];
    const lines: string[] = [];
    for await (const batch of readLineChunks([Buffer.from('a\n' + 'z'.repeat(30) + '\nb\n')], { maxLineBytes: 10, onLongLine: (l) => seen.push(l) })) lines.push(...batch);
    expect(lines).toEqual(['a', 'b']);
    expect(seen.map((l) => l.bytes)).toEqual([30]);
  });
});

describe('damaged gzip files', () => {
  const body = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `{"n":${i},"pad":"${'p'.repeat(i % 50)}"}`).join('\n') + '\n');
  const gz = gzipSync(body);

  async function readAll(path: string): Promise<{ lines: string[]; error: unknown }> {
    const lines: string[] = [];
    try {
      for await (const batch of readLineChunks(readFileChunks(path))) lines.push(...batch);
    } catch (err) {
      return { lines, error: err };
    }
    return { lines, error: null };
  }

  it('a truncated file yields every whole line before the damage, the cut line, then DamagedFileError with the offset', async () => {
    const path = join(dir, 'truncated.jsonl.gz');
    writeFileSync(path, gz.subarray(0, Math.floor(gz.length * 0.6)));
    const { lines, error } = await readAll(path);
    expect(error).toBeInstanceOf(DamagedFileError);
    const damage = error as DamagedFileError;
    expect(damage.path).toBe(path);
    expect(damage.offset).toBeGreaterThan(0);
    expect(damage.offset).toBeLessThanOrEqual(Math.floor(gz.length * 0.6));
    expect(damage.message).toMatch(/truncated\.jsonl\.gz is damaged at compressed byte \d+ \(unexpected end of file\)/);
    const expected = body.toString().split('\n');
    expect(lines.length).toBeGreaterThan(5000);
    // Every line but the last is whole and in order; the last is a prefix of the line it was cut from.
    expect(lines.slice(0, -1)).toEqual(expected.slice(0, lines.length - 1));
    expect(expected[lines.length - 1].startsWith(lines.at(-1)!)).toBe(true);
  });

  it('a corrupt file and a header-only file fail the same way, after what could be read', async () => {
    const corrupt = Buffer.from(gz);
    corrupt[Math.floor(gz.length / 2)] ^= 0xff;
    writeFileSync(join(dir, 'corrupt.jsonl.gz'), corrupt);
    const c = await readAll(join(dir, 'corrupt.jsonl.gz'));
    expect(c.error).toBeInstanceOf(DamagedFileError);
    expect(c.lines.length).toBeGreaterThan(1000);
    writeFileSync(join(dir, 'header.jsonl.gz'), gz.subarray(0, 10));
    const h = await readAll(join(dir, 'header.jsonl.gz'));
    expect(h.error).toBeInstanceOf(DamagedFileError);
    expect(h.lines).toEqual([]);
  });

  it('concatenated gzip members (what a recorder flushes) read as one file', async () => {
    const half = body.indexOf(10, body.length / 2) + 1;
    writeFileSync(join(dir, 'members.jsonl.gz'), Buffer.concat([gzipSync(body.subarray(0, half)), gzipSync(body.subarray(half))]));
    const { lines, error } = await readAll(join(dir, 'members.jsonl.gz'));
    expect(error).toBeNull();
    expect(lines).toEqual(body.toString().split('\n').slice(0, -1));
  });
});
