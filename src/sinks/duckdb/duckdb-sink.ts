// The DuckDB sink as the pipeline uses it: a DuckDBStore running in a worker thread. Parsing and the
// engine keep the main thread while DuckDB's appender and inserts run on the other core. Each write resolves once its transaction has committed.
import { DUCKDB_MEMORY_LIMIT } from './memory-limit.js';
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { CoinstreamError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { OutputBatch, Sink, StoredProgress } from '../contract.js';
import { toStoreBatch, transferables } from './store-batch.js';
import type { InitRequest, StoreConfig, WorkerLog, WorkerReply, WorkerRequest } from './worker-protocol.js';
import { takePrestartedWorker } from './prestart.js';
import { earlyOpenStarted, earlyOpenTaken, type EarlyOpen } from './early-opens.js';

type Pending = { resolve: (value: unknown) => void; reject: (err: Error) => void };

/**
 * The worker's code: the compiled worker.js next to this file, or, when this file runs as TypeScript
 * (tests, the bench), an entry that registers tsx first, since a worker starts without its parent's
 * loader. The installed program loads no TypeScript hook.
 */
const WORKER_URL = import.meta.url.endsWith('.ts') ? new URL('./worker-entry.mjs', import.meta.url) : new URL('./worker.js', import.meta.url);

export class DuckDBSink implements Sink, EarlyOpen {
  readonly name: string;
  private worker: Worker | null = null;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();
  /** No file at `path` when this sink was made: the store holds nothing (startsEmpty). */
  private readonly fileWasAbsent: boolean;
  /** startsEmpty() said so: the first open must find the store holding nothing. */
  private saidEmpty = false;

  /**
   * The open that construction started, until open() takes it over. Its failure is observed here, so it
   * is never an unhandled rejection; open() gets it.
   */
  private early: Promise<{ ok: true; held: boolean } | { ok: false; err: unknown }> | null;

  /**
   * Starts the worker and asks it to open the store at once, without waiting: loading DuckDB and
   * opening the file (~0.15 s) then run on the other core while the command goes on (the dashboard,
   * the sources, the other stores). Until open() is called the worker does not keep the process alive;
   * a command that fails before that has main() settle it (early-opens.ts): it exits as it would have,
   * with the file whole.
   */
  constructor(readonly path: string, private readonly logger: Logger) {
    this.name = `duckdb:${path}`;
    DUCKDB_MEMORY_LIMIT(); // a bad COINSTREAM_DUCKDB_MEMORY is bad usage, said here, before any file is made
    this.fileWasAbsent = !existsSync(path);
    this.early = this.startWorker().then(
      (held) => ({ ok: true, held }) as const,
      (err: unknown) => ({ ok: false, err }) as const,
    );
    this.worker?.unref();
    earlyOpenStarted(this);
  }

  /**
   * Whether the store holds nothing: its file was not there when this sink was made. The pipeline then
   * starts the job without waiting for the store to open; the open checks that no other process made
   * the file meanwhile.
   */
  startsEmpty(): boolean {
    this.saidEmpty = this.fileWasAbsent;
    return this.fileWasAbsent;
  }

  async abandon(): Promise<void> {
    const early = this.early;
    this.early = null;
    if (early === null) return;
    this.worker?.ref(); // the process waits for it now, or the close below would never be answered
    const result = await early;
    if (result.ok) await this.close();
    else await this.worker?.terminate();
  }

  async open(): Promise<void> {
    earlyOpenTaken(this);
    const early = this.early;
    this.early = null;
    this.worker?.ref();
    const result = early !== null ? await early : await this.startWorker().then((held) => ({ ok: true, held }) as const, (err: unknown) => ({ ok: false, err }) as const);
    if (result.ok && this.saidEmpty) {
      // The pipeline took this store's word that the job is new; it must still be so.
      this.saidEmpty = false;
      if (result.held) {
        await this.close();
        throw new CoinstreamError('SINK_FAILED', `${this.path} was created by another process while this run was starting, and holds results; run again to resume from them, or use another --sink duckdb:PATH`);
      }
    }
    if (result.ok) return;
    // A failed open (the file locked by another process, say) may be retried: with a new worker.
    const worker = this.worker;
    this.worker = null;
    await worker?.terminate();
    throw result.err;
  }

  /** A worker (the prestarted one, else a new one), asked to open the store; resolves to whether it holds results (checked only for a file that was not there). */
  private startWorker(): Promise<boolean> {
    const config: StoreConfig = { path: this.path, logLevel: this.logger.level };
    // The worker bin/coinstream.js started before the command was parsed, DuckDB loaded or loading.
    const prestarted = takePrestartedWorker();
    if (prestarted) {
      prestarted.postMessage({ op: 'init', config } satisfies InitRequest);
      this.logger.debug({ path: this.path }, 'duckdb store: taking over the worker started before the command was parsed');
    }
    const worker = prestarted ?? new Worker(WORKER_URL, { workerData: config });
    this.worker = worker;
    worker.on('message', (reply: WorkerReply | WorkerLog) => {
      if ('op' in reply) {
        this.logger[reply.level](reply.fields, reply.msg);
        return;
      }
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (reply.ok) p.resolve(reply.value);
      else p.reject(new CoinstreamError(reply.code ?? 'SINK_FAILED', reply.message, reply.retriable));
    });
    worker.on('error', (err: Error) => this.failAll(new CoinstreamError('SINK_FAILED', `${this.name}: the DuckDB worker crashed: ${err.message}`, false, { cause: err })));
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = null;
      if (this.pending.size > 0) this.failAll(new CoinstreamError('SINK_FAILED', `${this.name}: the DuckDB worker exited (code ${code}) with writes unanswered`));
    });
    // Whether the store holds results matters only for a file that was not there (startsEmpty).
    return this.call({ id: this.nextId++, op: 'open', checkEmpty: this.fileWasAbsent }).then((held) => held === true);
  }

  async readProgress(job: string): Promise<StoredProgress | null> {
    return (await this.call({ id: this.nextId++, op: 'readProgress', job })) as StoredProgress | null;
  }

  async clearJob(job: string): Promise<void> {
    await this.call({ id: this.nextId++, op: 'clearJob', job });
  }

  async jobs(): Promise<string[]> {
    return (await this.call({ id: this.nextId++, op: 'jobs' })) as string[];
  }

  // Trade columns live in shared memory: the worker reads them where they are (no copy), and another
  // sink may read the same batch at the same time. The pipeline reuses them only after every write of
  // the batch has resolved, i.e. after this worker's commit. Window and trend rows go as columns, whose
  // buffers the worker takes over: serialising and rebuilding ~5,000 objects per batch cost ~7 ms.
  async write(batch: OutputBatch): Promise<void> {
    const columns = toStoreBatch(batch);
    await this.call({ id: this.nextId++, op: 'write', batch: columns }, transferables(columns));
  }

  async close(): Promise<void> {
    if (!this.worker) return;
    await this.call({ id: this.nextId++, op: 'close' });
    await this.worker?.terminate();
    this.worker = null;
  }

  private call(request: WorkerRequest, transfer: ArrayBuffer[] = []): Promise<unknown> {
    const worker = this.worker;
    if (!worker) return Promise.reject(new CoinstreamError('SINK_FAILED', `${this.name}: not open`));
    return new Promise<unknown>((resolve, reject) => {
      this.pending.set(request.id, { resolve, reject });
      worker.postMessage(request, transfer);
    });
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
