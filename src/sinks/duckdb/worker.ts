// The DuckDB worker thread: owns the DuckDB connection and writes what the main thread sends.
// One message at a time, answered in order, so batches commit in trigger order.
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { CoinstreamError } from '../../core/errors.js';
import { DuckDBStore } from './duckdb-store.js';
import type { InitRequest, StoreConfig, StoreLogger, StoreLogLevel, WorkerLog, WorkerReply, WorkerRequest } from './worker-protocol.js';

/**
 * The nice value of this thread. The pipeline's thread parses every trade and is the one the run waits
 * for; this one writes behind it, with two batches of slack before the pipeline waits. When both want
 * the same core (two cores, plus GC and libuv threads), the pipeline should get it. Measured, 1M
 * trades, 2 vCPUs, 12 runs each: the pipeline thread's run-queue wait fell from ~195 ms to ~130 ms and
 * the best-of-3 wall time by 5-10%. Not 19: on a machine busy with other work, the store should still
 * keep up with live feeds.
 */
const WORKER_NICE = 10;

/** Lowers this thread's priority: Linux's nice is per thread, and a thread id goes where a pid would. */
function yieldToPipeline(logger: StoreLogger): void {
  try {
    const threadId = Number(readlinkSync('/proc/thread-self').split('/').pop());
    setPriority(threadId, WORKER_NICE);
  } catch (err) {
    logger.debug({ err }, 'duckdb worker keeps normal priority (no per-thread nice here)');
  }
}

const port = parentPort!;
let store: DuckDBStore;

/** pino's numbers for the levels; a level not listed (silent, fatal) lets nothing below it through. */
const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

/** Posts the lines at `least` and above to the main thread (WorkerLog); an Error is sent as its message and stack. */
function forwardingLogger(least: string): StoreLogger {
  const floor = LEVELS[least] ?? Infinity;
  const at = (level: StoreLogLevel) => (fields: Record<string, unknown>, msg: string) => {
    if (LEVELS[level] < floor) return;
    const plain = Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, v instanceof Error ? { type: v.name, message: v.message, stack: v.stack } : v]));
    port.postMessage({ op: 'log', level, fields: plain, msg } satisfies WorkerLog);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

function start(config: StoreConfig): void {
  const logger = forwardingLogger(config.logLevel);
  yieldToPipeline(logger);
  store = new DuckDBStore(config.path, logger);
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (request: WorkerRequest) => {
    queue = queue.then(() => handle(request));
  });
}

const given = workerData as StoreConfig | { prestarted: true };
if ('path' in given) start(given);
// Prestarted: the first message says which store, or that none will come (then the thread ends; it is
// never terminated while it is still loading DuckDB, which aborts the process from native code).
else port.once('message', (first: InitRequest | { op: 'drop' }) => (first.op === 'init' ? start(first.config) : port.close()));

async function handle(request: WorkerRequest): Promise<void> {
  let reply: WorkerReply;
  try {
    let value: unknown;
    if (request.op === 'open') {
      await store.open();
      if (request.checkEmpty) value = await store.holdsResults(); // for DuckDBSink.startsEmpty's promise
    }
    else if (request.op === 'write') await store.writeColumns(request.batch);
    else if (request.op === 'readProgress') value = await store.readProgress(request.job);
    else if (request.op === 'clearJob') await store.clearJob(request.job);
    else if (request.op === 'jobs') value = await store.jobs();
    else await store.close();
    reply = { id: request.id, ok: true, value };
  } catch (err) {
    const e = err as Error;
    reply = { id: request.id, ok: false, message: e.message, code: err instanceof CoinstreamError ? err.code : undefined, retriable: err instanceof CoinstreamError && err.retriable };
  }
  port.postMessage(reply);
  if (request.op === 'close') port.close();
}
