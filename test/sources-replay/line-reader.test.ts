import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/core/random.js';
import { readFileChunks, readLineChunks } from '../../src/sources/line-reader.js';

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
});
