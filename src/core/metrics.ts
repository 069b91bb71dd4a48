// Prometheus metrics (prom-client). One registry for the process; the dashboard's HTTP server will
// serve it at /metrics. Counters are labelled by feed so one bad exchange stands out.
import { Counter, Registry } from 'prom-client';

export const metrics = new Registry();

export const feedConnects = new Counter({ name: 'coinstream_feed_connects_total', help: 'Websocket connections opened, by feed', labelNames: ['feed'], registers: [metrics] });
export const feedDisconnects = new Counter({ name: 'coinstream_feed_disconnects_total', help: 'Websocket connections ended or refused, by feed and cause', labelNames: ['feed', 'cause'], registers: [metrics] });
export const feedGaps = new Counter({ name: 'coinstream_feed_gaps_total', help: 'Jumps in sequential trade ids (trades that never reached us), by feed and symbol', labelNames: ['feed', 'symbol'], registers: [metrics] });
export const feedDuplicates = new Counter({ name: 'coinstream_feed_duplicates_total', help: 'Trades received again (after a reconnect) and not aggregated twice, by feed', labelNames: ['feed'], registers: [metrics] });

/** A short, bounded label for why a connection ended (the full reason goes to the log). */
export function disconnectCause(reason: string): string {
  if (reason.startsWith('handshake refused: HTTP ')) return `http_${reason.slice(24, 27)}`;
  if (reason.startsWith('stale')) return 'stale';
  if (reason.startsWith('planned')) return 'planned';
  if (reason.startsWith('closed by server')) return 'closed';
  return 'connect_failed';
}
