// The DuckDB worker thread: owns the DuckDB connection and writes what the main thread sends.
// One message at a time, answered in order, so batches commit in trigger order.
import { parentPort, workerData } from 'node:worker_threads';
import { CoinstreamError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import { DuckDBStore } from './duckdb-store.js';
import type { WorkerReply, WorkerRequest } from './worker-protocol.js';

const { path, logLevel } = workerData as { path: string; logLevel: string };
const store = new DuckDBStore(path, createLogger(logLevel));
const port = parentPort!;

let queue: Promise<void> = Promise.resolve();
port.on('message', (request: WorkerRequest) => {
  queue = queue.then(() => handle(request));
});

async function handle(request: WorkerRequest): Promise<void> {
  let reply: WorkerReply;
  try {
    if (request.op === 'open') await store.open();
    else if (request.op === 'write') await store.writeColumns(request.batch);
    else await store.close();
    reply = { id: request.id, ok: true };
  } catch (err) {
    const e = err as Error;
    reply = { id: request.id, ok: false, message: e.message, code: err instanceof CoinstreamError ? err.code : undefined, retriable: err instanceof CoinstreamError && err.retriable };
  }
  port.postMessage(reply);
  if (request.op === 'close') port.close();
}
