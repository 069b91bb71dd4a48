// `coinstream run`: the main job on one machine.
import type { Clock } from '../core/clock.js';
import { parseDuration } from '../core/duration.js';
import { parseByteSize } from '../core/size.js';
import { RetryingSink } from '../sinks/retrying-sink.js';
import { parseArchive, withArchive, type ArchiveMode } from '../sinks/archive.js';
import { UsageError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { EngineConfig } from '../engine/contract.js';
import { validateEngineConfig } from '../engine/window-engine.js';
import { Pipeline } from '../pipeline/pipeline.js';
import { ConsoleSink } from '../sinks/console.js';
import { DEFAULT_SINKS, parseSinkSpecs, whereRejectionsGo } from '../sinks/spec.js';
import { DELTA_PARTITIONINGS, type DeltaPartitioning } from '../sinks/delta/delta-sink.js';
import { DEFAULT_LIVE_SOURCES, parseSourceSpecs, parseSpeed } from '../sources/spec.js';
import { shutdownSignal } from './signals.js';
import { parsePort, startLiveDashboard, type DashboardFlags } from './dashboard.js';

export { parsePort };

export interface EngineFlags {
  window: string;
  slide?: string;
  windowOffset: string;
  watermark: string;
  trigger: string;
  trendSpan: string;
}

export interface RunFlags extends EngineFlags, DashboardFlags {
  source?: string[];
  sink?: string[];
  speed: string;
  batches?: string;
  maxLine: string;
  fresh?: boolean;
  deltaTrades?: boolean;
  deltaPartition: string;
  /** `trades` (default) or `none`: whether the stores keep the accepted trades (sinks/archive.ts). */
  archive?: string;
}

export function engineConfigFromFlags(f: EngineFlags): EngineConfig {
  const windowMs = parseDuration(f.window, '--window');
  const config: EngineConfig = {
    windowMs,
    slideMs: f.slide === undefined ? windowMs : parseDuration(f.slide, '--slide'),
    offsetMs: parseDuration(f.windowOffset, '--window-offset'),
    watermarkMs: parseDuration(f.watermark, '--watermark'),
    triggerMs: parseDuration(f.trigger, '--trigger'),
    trendSpanMs: parseDuration(f.trendSpan, '--trend-span'),
  };
  validateEngineConfig(config);
  return config;
}

function parseBatches(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--batches "${text}" must be a whole number >= 1`);
  return n;
}

/**
 * --archive, and what it means for --delta-trades: with `none` no store archives the trades, Delta's
 * DIR/trades included, so asking for both gets a warning rather than a silent choice.
 */
export function archiveFromFlags(flags: { archive?: string; deltaTrades?: boolean; sink?: string[] }, logger: Logger): { archive: ArchiveMode; deltaTrades: boolean } {
  const archive = parseArchive(flags.archive ?? 'trades');
  const deltaTrades = flags.deltaTrades === true;
  if (archive === 'none' && deltaTrades) logger.warn('--delta-trades is ignored with --archive none: no store archives the accepted trades, DIR/trades included');
  else if (deltaTrades && !(flags.sink ?? []).some((s) => s.startsWith('delta:'))) logger.warn('--delta-trades does nothing here: it archives the trades in DIR/trades of a --sink delta:DIR, and no sink is one');
  return { archive, deltaTrades: deltaTrades && archive !== 'none' };
}

function parseDeltaPartition(text: string): DeltaPartitioning {
  if (!(DELTA_PARTITIONINGS as readonly string[]).includes(text)) throw new UsageError(`--delta-partition "${text}" must be one of: ${DELTA_PARTITIONINGS.join(', ')}`);
  return text as DeltaPartitioning;
}


export async function runCommand(flags: RunFlags, deps: { clock: Clock; logger: Logger }): Promise<void> {
  const { clock, logger } = deps;
  // Everything that can be wrong with the command line is checked before anything starts.
  const engine = engineConfigFromFlags(flags);
  const maxBatches = parseBatches(flags.batches);
  const speed = parseSpeed(flags.speed);
  parsePort(flags.port);
  const maxLineBytes = parseByteSize(flags.maxLine, '--max-line');
  const sourceSpecs = flags.source && flags.source.length > 0 ? flags.source : DEFAULT_LIVE_SOURCES;
  const sources = await parseSourceSpecs(sourceSpecs, { clock, logger, maxLineBytes });
  // Retries wrap every store (a store only says whether an error is worth retrying).
  const { archive, deltaTrades } = archiveFromFlags(flags, logger);
  const delta = { trades: deltaTrades, partition: parseDeltaPartition(flags.deltaPartition) };
  const stores = parseSinkSpecs(flags.sink && flags.sink.length > 0 ? flags.sink : DEFAULT_SINKS, logger, { delta });

  const sinks = withArchive(stores, archive).map((sink) => new RetryingSink(sink, { clock, logger }));
  const dashboard = await startLiveDashboard(flags, { clock, logger, trendSpanMs: engine.trendSpanMs });

  const shutdown = shutdownSignal(logger, 'writing the current windows, then closing the stores');
  // `run --sink console | head`: with no store and no dashboard, nothing is left to run for.
  const [only] = stores;
  if (stores.length === 1 && only instanceof ConsoleSink && !dashboard.served) only.onReaderGone = shutdown.stop;
  try {
    const summary = await new Pipeline({ sources, sinks, engine, clock, logger, maxBatches, speed, signal: shutdown.signal, fresh: flags.fresh, archive, observers: dashboard.observers() }).run();
    if (summary.reason === 'already-finished') return;
    const damaged = summary.damaged > 0 ? `; ${summary.damaged} damaged source(s) read up to the damage` : '';
    logger.info(
      { reason: summary.reason, batches: summary.batches, accepted: summary.accepted, rejected: summary.rejected, gaps: summary.gaps, damaged: summary.damaged },
      `done: ${summary.accepted} trades aggregated in ${summary.batches} batches; ${Object.values(summary.rejected).reduce((a, b) => a + b, 0)} rejected (${whereRejectionsGo(stores)})${damaged}`,
    );
  } finally {
    shutdown.dispose();
    await dashboard.close();
  }
}
