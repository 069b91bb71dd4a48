// The web dashboard as the commands start it: `run` and `process` serve the running pipeline's data
// (LiveDashboard) and its metrics; `coinstream dashboard --store SPEC` serves a store's.
import type { Clock } from '../core/clock.js';
import { CoinstreamError, UsageError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { DashboardData } from '../dashboard/contract.js';
import type { LiveDashboard } from '../dashboard/live.js';
import { isLoopbackHost } from '../core/loopback.js';
import type { Metrics } from '../metrics/metrics.js';
import type { PipelineObserver } from '../pipeline/pipeline.js';
import { shutdownSignal } from './signals.js';

export interface DashboardFlags {
  port: string;
  host: string;
  dashboard: boolean;
  /** True when --port was not given (nor COINSTREAM_PORT): a taken default port is not fatal. */
  portIsDefault?: boolean;
}

export function parsePort(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`--port "${text}" must be a port number 0-65535`);
  return n;
}

interface Served {
  close(): Promise<void>;
}

async function serve(data: DashboardData, flags: DashboardFlags, logger: Logger, metrics: Metrics | null): Promise<Served | null> {
  const port = parsePort(flags.port);
  if (!isLoopbackHost(flags.host)) {
    logger.warn({ host: flags.host }, `the dashboard listens on ${flags.host}: anyone who can reach this machine can read it (it has no login); use --host 127.0.0.1 to keep it local`);
  }
  const { startDashboardServer } = await import('../dashboard/server.js');
  try {
    return await startDashboardServer({ data, host: flags.host, port, logger, metrics: metrics ? { contentType: metrics.registry.contentType, metrics: () => metrics.text() } : undefined });
  } catch (err) {
    if (err instanceof CoinstreamError && err.code === 'PORT_IN_USE' && flags.portIsDefault) {
      logger.warn({ port }, `${err.message.split(';')[0]}: running without the dashboard (pass --port N for another port, --no-dashboard to say so)`);
      return null;
    }
    throw err;
  }
}

/** For `run` and `process`: the live dashboard and metrics, or nothing with --no-dashboard. */
export async function startLiveDashboard(flags: DashboardFlags, deps: { clock: Clock; logger: Logger; trendSpanMs?: number }): Promise<{ live: LiveDashboard | null; metrics: Metrics | null; served: boolean; observers: () => PipelineObserver[]; close(): Promise<void> }> {
  if (!flags.dashboard) return { live: null, metrics: null, served: false, observers: () => [], close: async () => undefined };
  const [{ LiveDashboard }, { Metrics }] = await Promise.all([import('../dashboard/live.js'), import('../metrics/metrics.js')]);
  const live = new LiveDashboard(deps.clock, deps.trendSpanMs ?? null);
  const metrics = new Metrics();
  const server = await serve(live, flags, deps.logger, metrics);
  return {
    live,
    metrics,
    served: server !== null,
    observers: () => [metrics.observer, live.observer()],
    async close() {
      await server?.close();
      await live.close();
    },
  };
}

/** `coinstream dashboard --store SPEC`: serves until Ctrl-C. */
export async function dashboardCommand(flags: DashboardFlags & { store: string }, deps: { logger: Logger }): Promise<void> {
  const { openStoreReader } = await import('../sinks/read-store.js');
  const { StoreDashboard } = await import('../dashboard/store.js');
  const reader = await openStoreReader(flags.store);
  const data = new StoreDashboard(reader, deps.logger);
  await data.start();
  const shutdown = shutdownSignal(deps.logger, 'closing the dashboard');
  try {
    const server = await serve(data, { ...flags, portIsDefault: false }, deps.logger, null);
    await new Promise<void>((resolve) => shutdown.signal.addEventListener('abort', () => resolve(), { once: true }));
    await server?.close();
  } finally {
    shutdown.dispose();
    await data.close();
  }
}
