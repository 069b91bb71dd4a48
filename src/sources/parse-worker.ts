// A replay parse thread: scans the lines of the pieces it is sent with the trade scanner and sends back
// what it read as columns (typed arrays, moved rather than copied). It decides nothing else: lines the
// scanner leaves (rejections, blank lines, unusual spellings) go back unread, and the main thread gives
// them parseTrade's verdict, so every verdict is the one an in-thread replay gives.
import { parentPort } from 'node:worker_threads';
import { TradeScanner } from '../core/scan-trade.js';
import type { Trade } from '../core/trade.js';
import type { ParseJob, ParseResult } from './parse-protocol.js';
import { NUMBERS_PER_TRADE } from './parse-protocol.js';

const scanner = new TradeScanner();
const port = parentPort!;
/** Tests only: COINSTREAM_TEST_FAULT=parse-thread-exit:N ends this thread when its job N arrives. */
const exitAtJob = Number(/^parse-thread-exit:(\d+)$/.exec(process.env.COINSTREAM_TEST_FAULT ?? '')?.[1] ?? -1);
let jobs = 0;

/** The (exchange, base, quote) triples seen, by id; the main thread keeps the same table from `newKeys`. */
const keyIds = new Map<string, number>();
let recent: { exchange: string; base: string; quote: string; id: number }[] = [];

function keyOf(t: Trade, newKeys: string[]): number {
  for (const k of recent) if (k.base === t.base && k.exchange === t.exchange && k.quote === t.quote) return k.id;
  const text = `${t.exchange}\u0000${t.base}\u0000${t.quote}`;
  let id = keyIds.get(text);
  if (id === undefined) {
    id = keyIds.size;
    keyIds.set(text, id);
    newKeys.push(t.exchange, t.base, t.quote);
  }
  recent = [{ exchange: t.exchange, base: t.base, quote: t.quote, id }, ...recent.slice(0, 7)];
  return id;
}

port.on('message', (job: ParseJob) => {
  if (jobs++ === exitAtJob) process.exit(3);
  const data = Buffer.from(job.bytes.buffer, job.bytes.byteOffset, job.bytes.byteLength);
  // Upper bounds: a line is at least its newline, so there are at most as many lines as newlines + 1.
  let lines = 0;
  for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10, nl + 1)) lines++;
  if (data.length > 0 && data[data.length - 1] !== 10) lines++;
  const lineEnds = new Uint32Array(lines);
  const fast = new Uint8Array(lines);
  const key = new Uint32Array(lines);
  const sell = new Uint8Array(lines);
  const numbers = new Float64Array(lines * NUMBERS_PER_TRADE);
  let tradeIds: (string | null)[] | null = null;
  const newKeys: string[] = [];
  let count = 0;
  let i = 0;
  for (let start = 0; start < data.length; i++) {
    let nl = data.indexOf(10, start);
    if (nl === -1) nl = data.length;
    lineEnds[i] = Math.min(nl + 1, data.length);
    const t = scanner.scan(data, start, nl, job.receivedAt);
    if (t !== null) {
      fast[i] = 1;
      key[count] = keyOf(t, newKeys);
      sell[count] = t.direction === 'sell' ? 1 : 0;
      const n = count * NUMBERS_PER_TRADE;
      numbers[n] = t.price;
      numbers[n + 1] = t.volume;
      numbers[n + 2] = t.timestamp;
      numbers[n + 3] = t.priceUsd;
      numbers[n + 4] = t.receivedAt ?? NaN;
      if (t.tradeId !== undefined) {
        tradeIds ??= new Array<string | null>(count).fill(null);
        tradeIds[count] = t.tradeId;
      } else if (tradeIds !== null) {
        tradeIds[count] = null;
      }
      count++;
    }
    start = nl + 1;
  }
  const result: ParseResult = { seq: job.seq, bytes: job.bytes, lines: i, lineEnds, fast, count, key, sell, numbers, tradeIds, newKeys };
  port.postMessage(result, [job.bytes.buffer as ArrayBuffer, lineEnds.buffer, fast.buffer, key.buffer, sell.buffer, numbers.buffer]);
});
