// Logs go to stderr as JSON lines (pino), so stdout stays clean for the console sink and `query`.
// COINSTREAM_LOG_LEVEL=debug|info|warn|error|silent; COINSTREAM_LOG_PRETTY is not needed: the lines
// are short and carry a `msg` that reads on its own.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level = process.env.COINSTREAM_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { app: 'coinstream' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: true }));
}

export const silentLogger: Logger = pino({ level: 'silent' });
