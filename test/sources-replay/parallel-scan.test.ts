// Lines scanned on parse threads come back as the replay's own thread reads them: the same lines, the
// same verdicts and values, the same byte positions, in file order, whatever the threads' timing.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Trade } from '../../src/core/trade.js';
import { readBytePieces, readFileChunks } from '../../src/sources/line-reader.js';
import { scanHere, scanInThreads, type ScannedItem } from '../../src/sources/parallel-scan.js';
import { tradesByLine } from '../../src/sources/scan-piece.js';

const KRAKEN = readFileSync('data/kraken-btcusd-2019-07-01.coincap.jsonl', 'utf8').split('\n').filter(Boolean);
const dir = mkdtempSync(join(tmpdir(), 'coinstream-pscan-'));
const clock = { now: () => Date.UTC(2026, 0, 1) };

const fields = (t: Trade) => JSON.stringify([t.exchange, t.base, t.quote, t.direction, t.price, t.volume, t.timestamp, t.priceUsd, t.tradeId, t.receivedAt].map((v) => (Object.is(v, -0) ? '-0' : v)));

/** Every line the items hold, flattened: its end in the file, its text and its verdict. */
async function flatten(items: AsyncIterable<ScannedItem>): Promise<string[]> {
  const out: string[] = [];
  let offset = 0;
  for await (const item of items) {
    if (item.kind === 'long-line') {
      offset += item.consumed;
      out.push(`${offset} long ${item.bytes} ${item.prefix.slice(0, 20)}`);
      continue;
    }
    const s = item.scanned;
    const trades = tradesByLine(s);
    for (let i = 0; i < s.lines; i++) {
      const trade = trades[i];
      const rejection = s.rejections.get(i);
      out.push(`${offset + s.lineEnd(i)} ${JSON.stringify(s.line(i))} ${trade ? fields(trade) : rejection ? JSON.stringify(rejection) : 'blank'}`);
    }
    offset += item.bytes;
  }
  return out;
}

const read = (file: string, maxLine: number) => readBytePieces(readFileChunks(file), maxLine);

const line = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...KRAKEN) },
  // Several keys, so that each thread's key table numbers them in its own order.
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom(...KRAKEN), fc.constantFrom('ethereum', 'solana', 'cardano', 'x'), fc.constantFrom('kraken', 'bitfinex')).map(([l, base, ex]) => l.replace('"kraken"', `"${ex}"`).replace('"bitcoin"', `"${base}"`)) },
  { weight: 1, arbitrary: fc.constantFrom(...KRAKEN).map((l) => l.replace('}', ',"tradeId":"t1","receivedAt":1561939300000}')) },
  { weight: 1, arbitrary: fc.constantFrom(...KRAKEN).map((l) => l + '\r') },
  // Trades only the general parser reads (an escape in a string, 17 digits): judged on the main thread
  // and put in line order among the threads' trades.
  { weight: 2, arbitrary: fc.constantFrom(...KRAKEN).map((l) => l.replace('"kraken"', '"kr\\u0061ken"')) },
  { weight: 1, arbitrary: fc.constantFrom(...KRAKEN).map((l) => l.replace(/"volume":([0-9.]+)/, '"volume":$10000000000000001')) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', 'not json', '{"price":1}', '{}', '[1]', 'x'.repeat(3000), '{"base":"\u00e9"}') },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }).map((s) => s.replace(/\n/g, '')) },
);

describe('scanInThreads', () => {
  it('gives what the replay thread reads alone, line for line, over generated files (small jobs, many in flight)', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(line, { minLength: 1, maxLength: 400 }), fc.boolean(), fc.integer({ min: 1, max: 3 }), async (lines, lastNewline, threads) => {
        const file = join(dir, `gen-${n++}.jsonl`);
        writeFileSync(file, lines.join('\n') + (lastNewline ? '\n' : ''));
        const alone = await flatten(scanHere(read(file, 2048), clock));
        const parallel = await flatten(scanInThreads(read(file, 2048), clock, threads, 4096));
        expect(parallel).toEqual(alone);
      }),
      { numRuns: 25 },
    );
  }, 120_000);

  it('reads the real hour through many jobs, with the same trades and positions', async () => {
    const file = join(dir, 'kraken.jsonl');
    writeFileSync(file, KRAKEN.join('\n') + '\n');
    const alone = await flatten(scanHere(read(file, 1 << 20), clock));
    const parallel = await flatten(scanInThreads(read(file, 1 << 20), clock, 2, 16 * 1024));
    expect(alone).toHaveLength(KRAKEN.length);
    expect(parallel).toEqual(alone);
  });

  it('stops its threads when the reader stops early', async () => {
    const file = join(dir, 'early.jsonl');
    writeFileSync(file, KRAKEN.join('\n') + '\n');
    const items = scanInThreads(read(file, 1 << 20), clock, 2, 8 * 1024);
    const first = await items.next();
    expect(first.done).toBe(false);
    // return() ends the generator: its finally terminates the threads (the test process would hang on them otherwise).
    await items.return(undefined);
    expect((await items.next()).done).toBe(true);
  });

  it('fails with a clear error, instead of waiting forever, when a parse thread ends on its own', async () => {
    const file = join(dir, 'thread-exit.jsonl');
    writeFileSync(file, KRAKEN.join('\n') + '\n');
    process.env.COINSTREAM_TEST_FAULT = 'parse-thread-exit:2'; // threads copy the environment when they start
    try {
      await expect(flatten(scanInThreads(read(file, 1 << 20), clock, 1, 8 * 1024))).rejects.toThrow(/a replay parse thread exited \(code 3\) with lines unread/);
    } finally {
      delete process.env.COINSTREAM_TEST_FAULT;
    }
  });
});
