import type { Logger } from '../core/logger.js';

/** Signals that ask for a graceful stop: Ctrl-C, `kill`, and a closed terminal or a service manager's reload. */
const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

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
  for (const name of STOP_SIGNALS) process.on(name, onSignal);
  /** The same graceful stop, asked for by the program itself (the console's reader went away). */
  const stop = () => controller.abort();
  return { signal: controller.signal, stop, dispose };
}
