// `coinstream record`: writes what live sources receive to JSONL (gzip when the name ends in .gz),
// one trade message per line, rotating to a new numbered file past a size. What the record holds is
// exactly what `--source replay:FILE` and `replay-server` read back.
//
// A recording is never overwritten: started again with the same --out, the recorder goes on in the next
// numbered file, and the files replay together (`--source replay:A --source replay:B`, merged by time).
//
// Crash safety: trades are buffered as text and flushed at least every `flushEveryMs` (2 s) while data
// arrives, whenever 1 MiB is buffered, on rotation and on close. A .gz file is a sequence of complete
// gzip members (RFC 1952 §2.2: gunzip, `gzip -dc` and createGunzip read them as one stream), one per
// flush, so a recorder killed at any moment (SIGKILL, power loss of the process) leaves a file that
// reads back up to its last flush. A plain .jsonl file gets whole lines in the same rhythm.
//
// Nothing received is dropped without a word: a message the source rejected goes, with its reason, to
// NAME.rejected.jsonl beside the record (made at the first one; the columns of rejected_trades), and
// connections and gaps in trade ids are logged as `run` logs them.
import { once } from 'node:events';
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { systemClock, type Clock, type Timer } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import { tradeToJson, type RejectedTrade } from '../../core/trade.js';
import type { Source } from '../contract.js';
import { logSourceStatus } from '../log-status.js';
import { mergeEvents } from '../merge.js';

const gzipAsync = promisify(gzip);

/** Flush once this much uncompressed text is buffered, whatever the clock says. */
const MAX_BUFFERED_BYTES = 1 << 20;

export interface RecordOptions {
  out: string;
  /** Start a new file once this many bytes (uncompressed) went to the current one. */
  rotateBytes: number;
  signal: AbortSignal;
  logger: Logger;
  /** Longest time received trades stay in memory before they reach the file; default 2000 ms. */
  flushEveryMs?: number;
  /** Schedules the periodic flush; default the system clock. */
  clock?: Clock;
}

/** `trades.jsonl.gz`, then `trades.1.jsonl.gz`, `trades.2.jsonl.gz`, … */
export function rotatedName(out: string, index: number): string {
  if (index === 0) return out;
  const m = /^(.*?)(\.jsonl(?:\.gz)?)$/.exec(out);
  return m ? `${m[1]}.${index}${m[2]}` : `${out}.${index}`;
}

/** Where a recording's rejected messages go: `trades.jsonl.gz` -> `trades.rejected.jsonl`. */
export function rejectsName(out: string): string {
  return `${out.replace(/\.jsonl(\.gz)?$/, '')}.rejected.jsonl`;
}

/** One rejected message as a JSON line with the columns of rejected_trades. */
function rejectedLine(r: RejectedTrade): string {
  return JSON.stringify({ received_at: new Date(r.receivedAt).toISOString(), source: r.source, reason: r.reason, detail: r.detail, raw: r.raw }) + '\n';
}

/**
 * The first file of the rotation from `from` on that does not exist yet. A recorder started again with
 * the same --out opened its first file with 'w', and a night's recording was gone without a word.
 */
function firstFreeIndex(out: string, from: number): number {
  let index = from;
  while (existsSync(rotatedName(out, index))) index++;
  return index;
}

/** Opens a file ('wx': a new one; 'a': appending); rejects (rather than emitting an unhandled 'error') when it cannot. */
async function openFile(name: string, flags: 'wx' | 'a'): Promise<WriteStream> {
  const file = createWriteStream(name, { flags });
  await once(file, 'ready');
  return file;
}

/** Writes one chunk, honouring backpressure, and resolves once the OS has it. */
async function writeChunk(file: WriteStream, chunk: Buffer): Promise<void> {
  let settled: (err?: Error | null) => void = () => undefined;
  const written = new Promise<void>((resolve, reject) => (settled = (err) => (err ? reject(err) : resolve())));
  written.catch(() => undefined); // a failed write also rejects below, through 'drain' or this await
  if (!file.write(chunk, settled)) await once(file, 'drain');
  await written;
}

class RotatingFile {
  private index = 0;
  /** Uncompressed bytes given to the current file, buffered or written. */
  private bytes = 0;
  private buffer: string[] = [];
  private bufferedBytes = 0;
  private bufferedLines = 0;
  private timer: Timer | null = null;
  /** File operations run one after the other: timer flushes, size flushes, rotation, close. */
  private queue: Promise<void> = Promise.resolve();
  /** The first write or flush error; every later call rethrows it. */
  private failure: Error | null = null;
  private closed = false;
  readonly written: string[] = [];

  private constructor(
    private file: WriteStream,
    private name: string,
    private readonly o: { out: string; rotateBytes: number; flushEveryMs: number; clock: Clock; logger: Logger },
  ) {
    this.watch(file);
    this.written.push(name);
  }

  static async open(o: { out: string; rotateBytes: number; flushEveryMs: number; clock: Clock; logger: Logger }): Promise<RotatingFile> {
    const index = firstFreeIndex(o.out, 0);
    const name = rotatedName(o.out, index);
    if (index > 0) o.logger.info({ out: o.out, file: name }, `${o.out} already holds a recording: recording to ${name} (a recording is never overwritten; replay the files together)`);
    const file = new RotatingFile(await openFile(name, 'wx'), name, o);
    file.index = index;
    return file;
  }

  private watch(file: WriteStream): void {
    // Errors surface through the awaited write/finish; this listener only keeps an 'error' event
    // between operations from being unhandled, and remembers it for the next call.
    file.on('error', (err) => (this.failure ??= err));
  }

  private get gz(): boolean {
    return this.name.endsWith('.gz');
  }

  /** Buffers whole lines; flushes or rotates when a size is reached. */
  async write(text: string): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.closed) throw new Error('recorder: write after close');
    if (text === '') return;
    const size = Buffer.byteLength(text);
    this.buffer.push(text);
    this.bufferedBytes += size;
    this.bufferedLines += countLines(text);
    this.bytes += size;
    if (this.bytes >= this.o.rotateBytes) {
      await this.enqueue(() => this.rotate());
    } else if (this.bufferedBytes >= MAX_BUFFERED_BYTES) {
      await this.enqueue(() => this.flush());
    } else if (!this.timer) {
      this.timer = this.o.clock.setTimeout(() => {
        this.timer = null;
        // Its error is kept in `failure` and thrown by the next write or close.
        this.enqueue(() => this.flush()).catch(() => undefined);
      }, this.o.flushEveryMs);
    }
  }

  private enqueue(op: () => Promise<void>): Promise<void> {
    const run = this.queue.then(async () => {
      if (this.failure) throw this.failure;
      try {
        await op();
      } catch (err) {
        this.failure ??= err as Error;
        throw err;
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Appends what is buffered: one complete gzip member, or the plain lines. */
  private async flush(): Promise<void> {
    this.timer?.cancel();
    this.timer = null;
    if (this.buffer.length === 0) return;
    const text = this.buffer.join('');
    const lines = this.bufferedLines;
    this.buffer = [];
    this.bufferedBytes = 0;
    this.bufferedLines = 0;
    const chunk = this.gz ? await gzipAsync(text) : Buffer.from(text, 'utf8');
    await writeChunk(this.file, chunk);
    this.o.logger.debug({ file: this.name, bytes: chunk.length, lines }, 'recording flushed');
  }

  private async endFile(): Promise<void> {
    const file = this.file;
    file.end();
    await finished(file);
    if (this.failure) throw this.failure;
  }

  private async rotate(): Promise<void> {
    await this.flush();
    await this.endFile();
    this.index = firstFreeIndex(this.o.out, this.index + 1);
    this.bytes = 0;
    const name = rotatedName(this.o.out, this.index);
    this.file = await openFile(name, 'wx');
    this.name = name;
    this.watch(this.file);
    this.written.push(name);
  }

  /** Flushes what is left and closes the file; afterwards no timer is left running. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.timer?.cancel();
    this.timer = null;
    try {
      await this.enqueue(async () => {
        await this.flush();
        await this.endFile();
      });
    } finally {
      if (!this.file.destroyed && this.failure) this.file.destroy();
    }
  }
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

export interface RecordSummary {
  trades: number;
  files: string[];
  /** Rejected messages by reason, and the file that keeps them (null: none). */
  rejected: Record<string, number>;
  rejectsFile: string | null;
  gaps: number;
}

export async function recordSources(sources: Source[], o: RecordOptions): Promise<RecordSummary> {
  const out = await RotatingFile.open({
    out: o.out,
    rotateBytes: o.rotateBytes,
    flushEveryMs: o.flushEveryMs ?? 2000,
    clock: o.clock ?? systemClock,
    logger: o.logger,
  });
  let trades = 0;
  let gaps = 0;
  const rejected: Record<string, number> = {};
  const rejectsFile = rejectsName(o.out);
  let rejects: WriteStream | null = null;
  const closeRejects = async () => {
    if (rejects) await new Promise<void>((resolve, reject) => rejects!.end((err?: Error | null) => (err ? reject(err) : resolve())));
  };
  try {
    for await (const event of mergeEvents(sources.map((s) => s.events(o.signal)))) {
      if (event.kind === 'trades') {
        let text = '';
        for (const t of event.trades) text += tradeToJson(t) + '\n';
        await out.write(text);
        trades += event.trades.length;
      } else if (event.kind === 'rejected') {
        const r = event.rejected;
        if (!rejects) o.logger.warn({ source: r.source, reason: r.reason, file: rejectsFile }, `${r.source}: a message was rejected (${r.reason}: ${r.detail}); kept with its reason in ${rejectsFile}, as are any after it`);
        rejects ??= await openFile(rejectsFile, 'a');
        await writeChunk(rejects, Buffer.from(rejectedLine(r)));
        rejected[r.reason] = (rejected[r.reason] ?? 0) + 1;
      } else {
        if (event.kind === 'gap') gaps++;
        logSourceStatus(o.logger, event);
      }
    }
  } catch (err) {
    await out.close().catch(() => undefined); // the first error is the one to report
    await closeRejects().catch(() => undefined);
    throw err;
  }
  await out.close();
  await closeRejects();
  const nRejected = Object.values(rejected).reduce((a, b) => a + b, 0);
  const notes = [
    ...(nRejected > 0 ? [`${nRejected} message(s) rejected (${Object.entries(rejected).map(([k, v]) => `${k} ${v}`).join(', ')}), kept in ${rejectsFile}`] : []),
    ...(gaps > 0 ? [`${gaps} gap(s) in trade ids: trades were missed (see the warnings)`] : []),
  ];
  o.logger.info({ trades, files: out.written, rejected, gaps }, `recorded ${trades} trades${notes.length ? `; ${notes.join('; ')}` : ''}`);
  return { trades, files: out.written, rejected, rejectsFile: nRejected > 0 ? rejectsFile : null, gaps };
}
