// The log lines of source events that only inform (gaps, damage, connections), the same in every
// command that reads sources (`run`, `ingest`).
import type { Logger } from '../core/logger.js';
import type { SourceEvent } from './contract.js';

/** Logs `event` if it is a gap, damage or a connection change; true when it was one of those. */
export function logSourceStatus(logger: Logger, event: SourceEvent): boolean {
  switch (event.kind) {
    case 'gap':
      logger.warn({ source: event.source, symbol: event.symbol, expected: event.expected, received: event.received }, 'gap in trade ids: trades were missed');
      return true;
    case 'damaged':
      logger.warn({ source: event.source }, `${event.source}: ${event.detail}; going on without the rest of it`);
      return true;
    case 'connected':
      logger.info({ source: event.source, url: event.url }, 'connected');
      return true;
    case 'disconnected':
      // The feed's client has already logged why, at warn level.
      logger.debug({ source: event.source, reason: event.reason, retryInMs: event.retryInMs }, 'disconnected; will retry');
      return true;
    default:
      return false;
  }
}
