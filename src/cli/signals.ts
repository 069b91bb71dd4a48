import type { Logger } from '../core/logger.js';

/** Signals that ask for a graceful stop: Ctrl-C, `kill`, and a closed terminal or a service manager's reload. */
const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** A stop signal that came before the command installed its handler (catchEarlySignals). */
let early: NodeJS.Signals | null = null;

function onEarlySignal(signal: NodeJS.Signals): void {
  if (early === null) {
    early = signal;
    return;
  }
  stopCatchingEarly();
  process.kill(process.pid, signal);
}

function stopCatchingEarly(): void {
  for (const name of STOP_SIGNALS) process.off(name, onEarlySignal);
}

/**
 * Called by bin/coinstream.js first thing for the commands that stop gracefully: a Ctrl-C while the
 * command still loads and sets up (the first ~0.2-0.9 s) killed the process by SIGINT (exit 130, no
 * line) instead of stopping it. The signal is kept for shutdownSignal, which acts on it at once; a
 * second one still ends the process at once.
 */
export function catchEarlySignals(): void {
  for (const name of STOP_SIGNALS) process.on(name, onEarlySignal);
}

/**
 * The first stop signal aborts the returned signal (stop gracefully); a second one ends the process at
 * once. Call dispose() when the command is done.
 *
 * "At once" means dying by the signal itself, as a program without a handler would: the handlers are
 * removed and the signal is raised again. process.exit() instead runs exit handlers and tears down
 * the DuckDB worker while it may be inside a native call, which could abort the process
 * ("terminate called after throwing an instance of 'Napi::Error'", exit 134). A killed process is
 * safe for the stores: each batch is one transaction, so the store keeps its last committed batch.
 */
export function shutdownSignal(logger: Logger, what: string): { signal: AbortSignal; stop: () => void; dispose: () => void } {
  const controller = new AbortController();
  const dispose = () => {
    for (const name of STOP_SIGNALS) process.off(name, onSignal);
  };
  function onSignal(signal: NodeJS.Signals): void {
    if (!controller.signal.aborted) {
      logger.info({ signal }, `stopping: ${what} (send again to exit at once)`);
      controller.abort();
      return;
    }
    logger.warn({ signal }, 'second signal: exiting at once; the stores keep their last committed batch');
    dispose();
    process.kill(process.pid, signal);
  }
  stopCatchingEarly();
  for (const name of STOP_SIGNALS) process.on(name, onSignal);
  if (early !== null) {
    const signal = early;
    early = null;
    onSignal(signal);
  }
  /** The same graceful stop, asked for by the program itself (the console's reader went away). */
  const stop = () => controller.abort();
  return { signal: controller.signal, stop, dispose };
}
