// Scanning a replay's lines on other cores.
//
// The replay reads the file on its own thread (cheap: ~25 ms per million lines) and cuts it into
// pieces of whole lines, exactly as it does alone. Here those pieces are packed into jobs of ~256 KiB
// and sent, round-robin, to parse threads that run the trade scanner; their columns come back and are
// turned into the same ScannedPiece an in-thread scan gives, in file order, by sequence number.
//
// Nothing is decided in the parse threads. Lines the scanner leaves are judged here by parseTrade;
// the engine, the watermark and with it every late decision, and the positions stored for recovery all
// stay on the replay's side, in file order, as before. The threads only make the common line cheaper to
// read on this one: what would be ~0.5 s of scanning per million trades becomes building the objects.
import { Worker } from 'node:worker_threads';
import type { Clock } from '../core/clock.js';
import { WasmTradeScanner } from '../core/wasm-scanner.js';
import { KeyTable, TradeColumns } from '../core/trade-columns.js';
import type { TradeKey } from '../sinks/contract.js';
import type { BytePiece, LongLine } from './line-reader.js';
import type { ParseJob, ParseResult } from './parse-protocol.js';
import { judgeLine, lineText, scanPiece, type Rejection, type ScannedPiece } from './scan-piece.js';

/** A piece of lines, judged: what the replay makes events of. */
export type ScannedItem = { kind: 'scanned'; scanned: ScannedPiece; bytes: number; receivedAt: number } | LongLine;

/** Bytes per job: big enough that a message per job costs nothing, small enough that threads start early. */
const JOB_BYTES = 256 * 1024;
/** Jobs sent ahead per thread: enough to keep each busy while the replay's thread catches up. */
const JOBS_AHEAD_PER_THREAD = 4;

/** The parse thread's code (as duckdb-sink.ts: an entry that registers tsx when this file runs as TypeScript). */
const WORKER_URL = import.meta.url.endsWith('.ts') ? new URL('./parse-worker-entry.mjs', import.meta.url) : new URL('./parse-worker.js', import.meta.url);

/** Scans every piece on this thread, with the WebAssembly scanner (a piece per call: 2.2x the JavaScript scanner's speed). */
export async function* scanHere(pieces: AsyncIterable<BytePiece>, clock: Pick<Clock, 'now'>): AsyncGenerator<ScannedItem> {
  const keys = new KeyTable();
  const scanner = new WasmTradeScanner(keys);
  for await (const piece of pieces) {
    if (piece.kind === 'long-line') {
      yield piece;
      continue;
    }
    const receivedAt = clock.now();
    yield { kind: 'scanned', scanned: scanPiece(piece.data, receivedAt, scanner, keys), bytes: piece.data.length, receivedAt };
  }
}

type Ordered = { kind: 'job'; seq: number; receivedAt: number; thread: number } | { kind: 'long'; piece: LongLine };

/**
 * Scans the pieces on `threads` parse threads; yields what scanHere would, in the same order. If the
 * pieces fail (a read error), everything before the failure is yielded first, then the error.
 */
export async function* scanInThreads(pieces: AsyncIterable<BytePiece>, clock: Pick<Clock, 'now'>, threads: number, jobBytes = JOB_BYTES): AsyncGenerator<ScannedItem> {
  const workers = Array.from({ length: threads }, () => new Worker(WORKER_URL));
  /** Per thread, its key table as it sent it. */
  const keyTables: TradeKey[][] = workers.map(() => []);
  /** Keys of the pieces whose lines are not all the threads' (see pieceOf). */
  const ownKeys = new KeyTable();
  const results = new Map<number, ParseResult>();
  let waiting: { seq: number; resolve: () => void; reject: (err: Error) => void } | null = null;
  let failure: Error | null = null;
  /** Set once the replay is done with the threads: their exits are expected from then on. */
  let stopping = false;
  workers.forEach((worker, thread) => {
    worker.on('message', (result: ParseResult) => {
      // Keys are added in the order the thread sent them, whatever order the jobs are used in.
      for (const k of result.newKeys) keyTables[thread].push(k);
      results.set(result.seq, result);
      if (waiting?.seq === result.seq) waiting.resolve();
    });
    worker.on('error', (err: Error) => {
      failure = new Error(`a replay parse thread failed: ${err.message}`, { cause: err });
      waiting?.reject(failure);
    });
    // A thread that ends on its own (killed, out of memory) would leave its jobs unanswered: fail, not hang.
    worker.on('exit', (code) => {
      if (stopping) return;
      failure ??= new Error(`a replay parse thread exited (code ${code}) with lines unread`);
      waiting?.reject(failure);
    });
  });

  const it = pieces[Symbol.asyncIterator]();
  const order: Ordered[] = [];
  let seq = 0;
  let inFlight = 0;
  let job: Buffer | null = null;
  let jobLength = 0;
  let sourceDone = false;
  let sourceError: unknown = null;

  const send = () => {
    if (job === null || jobLength === 0) return;
    const thread = seq % threads;
    const receivedAt = clock.now();
    const message: ParseJob = { seq, bytes: new Uint8Array(job.buffer, job.byteOffset, jobLength), receivedAt };
    workers[thread].postMessage(message, [job.buffer as ArrayBuffer]);
    order.push({ kind: 'job', seq, receivedAt, thread });
    seq++;
    inFlight++;
    job = null;
    jobLength = 0;
  };
  const add = (data: Buffer) => {
    if (job !== null && jobLength + data.length > job.length) send();
    // Its own memory per job: it moves to the thread and back, and the pieces that come back keep it.
    job ??= Buffer.allocUnsafeSlow(Math.max(jobBytes, data.length));
    data.copy(job, jobLength);
    jobLength += data.length;
  };

  try {
    for (;;) {
      while (!sourceDone && inFlight < threads * JOBS_AHEAD_PER_THREAD) {
        let next: IteratorResult<BytePiece>;
        try {
          next = await it.next();
        } catch (err) {
          sourceError = err;
          sourceDone = true;
          break;
        }
        if (next.done) {
          sourceDone = true;
          break;
        }
        const piece = next.value;
        if (piece.kind === 'long-line') {
          send();
          order.push({ kind: 'long', piece });
        } else {
          add(piece.data);
        }
      }
      if (sourceDone || order.length === 0) send();
      const head = order.shift();
      if (head === undefined) {
        if (sourceError !== null) throw sourceError;
        return;
      }
      if (head.kind === 'long') {
        yield head.piece;
        continue;
      }
      if (failure) throw failure;
      if (!results.has(head.seq)) {
        await new Promise<void>((resolve, reject) => {
          waiting = { seq: head.seq, resolve, reject };
        });
        waiting = null;
      }
      const result = results.get(head.seq)!;
      results.delete(head.seq);
      inFlight--;
      yield { kind: 'scanned', scanned: pieceOf(result, keyTables[head.thread], ownKeys, head.receivedAt), bytes: result.bytes.byteLength, receivedAt: head.receivedAt };
    }
  } finally {
    stopping = true;
    await it.return?.();
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/**
 * A parse thread's columns as the ScannedPiece an in-thread scan gives: the same trades, the same
 * verdicts. The lines the thread left are judged here; when none of them is a trade (the usual case:
 * there are none, or they are rejections), the thread's columns are the piece's trades as they came.
 * Otherwise the trades are put in line order in new columns keyed by `ownKeys`.
 */
function pieceOf(r: ParseResult, keys: TradeKey[], ownKeys: KeyTable, receivedAt: number): ScannedPiece {
  const data = Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength);
  const { fast, lineEnds } = r;
  const threads = new TradeColumns(keys, 0, r.count, r.columns);
  const rejections = new Map<number, Rejection>();
  const isTrade = Uint8Array.from(fast);
  const judged = new TradeColumns(ownKeys.keys, 16);
  const judgedLines: number[] = [];
  for (let i = 0; i < r.lines; i++) {
    if (fast[i] === 0 && judgeLine(i, data, lineEnds, receivedAt, judged, ownKeys, rejections)) {
      isTrade[i] = 1;
      judgedLines.push(i);
    }
  }
  let trades = threads;
  if (judgedLines.length > 0) {
    trades = new TradeColumns(ownKeys.keys, r.count + judged.length);
    let t = 0;
    let j = 0;
    for (let i = 0; i < r.lines; i++) {
      if (fast[i] === 1) trades.appendTrade(threads.at(t++), ownKeys);
      else if (judgedLines[j] === i) trades.appendTrade(judged.at(j++), ownKeys);
    }
  }
  return { lines: r.lines, trades, isTrade, rejections, line: (i) => lineText(data, lineEnds, i), lineEnd: (i) => lineEnds[i] };
}
