// A replay parse thread: scans the lines of the pieces it is sent with the trade scanner and sends back
// what it read as columns (typed arrays, moved rather than copied). It decides nothing else: lines the
// scanner leaves (rejections, blank lines, unusual spellings) go back unread, and the main thread gives
// them parseTrade's verdict, so every verdict is the one an in-thread replay gives.
import { parentPort } from 'node:worker_threads';
import { detachOneBufferEarly } from '../core/detach-early.js';
import { TradeScanner } from '../core/scan-trade.js';
import { KeyTable, TradeColumns } from '../core/trade-columns.js';
import type { ParseJob, ParseResult } from './parse-protocol.js';

// This thread moves its results to the main thread (detaching their buffers): see detach-early.ts.
detachOneBufferEarly();
const scanner = new TradeScanner();
/** The thread's keys; the main thread keeps the same table from each result's `newKeys`. */
const keys = new KeyTable();
const port = parentPort!;
/** Tests only: COINSTREAM_TEST_FAULT=parse-thread-exit:N ends this thread when its job N arrives. */
const exitAtJob = Number(/^parse-thread-exit:(\d+)$/.exec(process.env.COINSTREAM_TEST_FAULT ?? '')?.[1] ?? -1);
let jobs = 0;

port.on('message', (job: ParseJob) => {
  if (jobs++ === exitAtJob) process.exit(3);
  const data = Buffer.from(job.bytes.buffer, job.bytes.byteOffset, job.bytes.byteLength);
  // Upper bounds: a line is at least its newline, so there are at most as many lines as newlines + 1.
  let lines = 0;
  for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10, nl + 1)) lines++;
  if (data.length > 0 && data[data.length - 1] !== 10) lines++;
  const lineEnds = new Uint32Array(lines);
  const fast = new Uint8Array(lines);
  const keysBefore = keys.keys.length;
  const trades = new TradeColumns(keys.keys, lines);
  let i = 0;
  for (let start = 0; start < data.length; i++) {
    // As scanPiece: the scanner finds the end of a line it reads; the others are looked for here.
    let nl = scanner.scanLineInto(data, start, data.length, job.receivedAt, trades, keys);
    if (nl !== -1) fast[i] = 1;
    else {
      nl = data.indexOf(10, start);
      if (nl === -1) nl = data.length;
    }
    lineEnds[i] = Math.min(nl + 1, data.length);
    start = nl + 1;
  }
  const { key, price, volume, timestamp, priceUsd, receivedAt, tradeId } = trades;
  const result: ParseResult = { seq: job.seq, bytes: job.bytes, lines: i, lineEnds, fast, count: trades.length, columns: { key, price, volume, timestamp, priceUsd, receivedAt, tradeId }, newKeys: keys.keys.slice(keysBefore) };
  // The columns are views of one buffer (sized for every line, so they never grew).
  port.postMessage(result, [job.bytes.buffer as ArrayBuffer, lineEnds.buffer, fast.buffer, price.buffer as ArrayBuffer]);
});
