import type { Logger } from '../core/logger.js';

/**
 * First SIGINT/SIGTERM aborts the returned signal (stop gracefully); a second one exits at once.
 * Call dispose() when the command is done.
 */
export function shutdownSignal(logger: Logger, what: string): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  let count = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    count++;
    if (count === 1) {
      logger.info({ signal }, `stopping: ${what} (send again to exit at once)`);
      controller.abort();
    } else {
      logger.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
