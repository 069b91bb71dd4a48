// The DuckDB worker, started before the command is even parsed.
//
// A run into DuckDB waits, before its first write, for a worker thread to boot and load DuckDB
// (~0.2-0.3 s). bin/coinstream.js starts one for `run` as its first act, so that this happens while the
// main thread loads the CLI (~0.1-0.15 s, measured on the 2-vCPU VM: boot 130-140 ms, then main.js
// 82-93 ms and run.js 45-51 ms before the sink is made). The first DuckDBSink takes it over and tells it
// which store to open; a run without one ends it (main() calls dropPrestartedWorker). This file imports
// nothing but worker_threads, so the bin pays nothing for it.
import { Worker } from 'node:worker_threads';

let prestarted: Worker | null = null;
/** Set once the prestarted worker failed or ended on its own: it is not handed out. */
let dead = false;

/** Starts the worker (once). It keeps the process alive only once a sink has taken it over. */
export function prestartDuckDBWorker(): void {
  if (prestarted !== null) return;
  const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: { prestarted: true } });
  worker.unref();
  // Before a sink takes it over, a failure only means it is not used: the sink starts its own.
  worker.on('error', () => (dead = true));
  worker.on('exit', () => (dead = true));
  prestarted = worker;
}

/** The prestarted worker, for the first DuckDBSink; null when there is none (or it failed). */
export function takePrestartedWorker(): Worker | null {
  const worker = prestarted;
  prestarted = null;
  if (worker === null || dead) return null; // it ended on its own
  worker.removeAllListeners('error');
  worker.removeAllListeners('exit');
  return worker;
}

/**
 * Ends a prestarted worker that no sink took (a run without DuckDB, a command that failed first). It is
 * asked to end, and ends once DuckDB has loaded: terminating a thread while a native addon loads
 * aborted the process ("terminate called after throwing an instance of 'Napi::Error'", 4 of 30 runs of
 * a bad flag). If it has not ended within DROP_WAIT_MS (a hung load), it is left to the process's exit.
 */
export async function dropPrestartedWorker(): Promise<void> {
  const worker = prestarted;
  prestarted = null;
  if (worker === null || dead) return;
  worker.ref();
  const ended = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  worker.postMessage({ op: 'drop' });
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([ended, new Promise<void>((resolve) => (timer = setTimeout(resolve, DROP_WAIT_MS).unref()))]);
  clearTimeout(timer);
  worker.unref();
}

/** How long a command waits at its end for an unused prestarted worker to finish loading DuckDB. */
const DROP_WAIT_MS = 5_000;
