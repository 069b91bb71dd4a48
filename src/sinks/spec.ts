// SINK SPEC (DESIGN.md): console | duckdb:PATH | mysql://USER[:PASS]@HOST:PORT/DB | postgres://USER[:PASS]@HOST:PORT/DB | delta:PATH
// The SQL stores' modules import their drivers only when opened, so `--help` loads neither mysql2 nor pg.
import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from '../core/errors.js';
import { joinedSpecsHint, refuseJoinedSinks } from '../core/joined-specs.js';
import { userPath } from '../core/paths.js';
import { firstRepeat } from '../core/repeats.js';
import type { Logger } from '../core/logger.js';
import { ConsoleSink } from './console.js';
import { SINK_SPEC_HELP, type Sink } from './contract.js';
import { DuckDBSink } from './duckdb/duckdb-sink.js';
import { createMysqlStore } from './mysql/mysql.js';
import { createPostgresStore } from './postgres/postgres.js';
import { parseSqlTarget } from './sql/target.js';
import { createDeltaSinks, type DeltaSinkOptions } from './delta/delta-sink.js';
import { isLoopbackHost } from '../core/loopback.js';

export const DEFAULT_SINKS = ['duckdb:./coinstream.duckdb', 'console'];

/** The sinks of every --sink, in order; a store named twice is refused before any is made (see refuseRepeats). */
export function parseSinkSpecs(specs: string[], logger: Logger, options: { delta?: DeltaSinkOptions } = {}): Sink[] {
  refuseRepeats(specs);
  const sinks = specs.flatMap((spec) => parseSinkSpec(spec, logger, options));
  // The console says where rejections are kept: in a store beside it, or nowhere (it prints them).
  const keeps = keepsRejections(sinks);
  for (const sink of sinks) if (sink instanceof ConsoleSink) sink.keptElsewhere = keeps;
  return sinks;
}

/** Whether any of the sinks is a store, which keeps rejections in rejected_trades. */
function keepsRejections(sinks: Sink[]): boolean {
  return sinks.some((s) => s.readProgress);
}

/** Where a run's final line says its rejections went. */
export function whereRejectionsGo(sinks: Sink[]): string {
  return keepsRejections(sinks) ? 'kept in rejected_trades' : 'no store keeps them';
}

/**
 * The same store twice would be written twice over: for a DuckDB file, by two DuckDB instances in one
 * process, which its lock does not keep apart (the lock is per process) and which can corrupt it.
 * Checked on the specs, before a DuckDBSink starts opening its file. Files are compared by resolved
 * path, databases by address without the password.
 */
function refuseRepeats(specs: string[]): void {
  const found = firstRepeat(specs.map(storeIdentity), (identity) => identity.key);
  if (found) throw new UsageError(`--sink ${found.repeat.shown} repeats --sink ${found.earlier.shown}: it would be written twice over; give each sink once`);
}

/** What a spec writes to, and the spec as it may be shown (a SQL store's password as ***). */
function storeIdentity(spec: string): { key: string; shown: string } {
  for (const kind of ['duckdb:', 'delta:']) {
    if (spec.startsWith(kind) && spec.length > kind.length) return { key: `${kind}${realPath(resolve(userPath(spec.slice(kind.length))))}`, shown: spec };
  }
  if (/^(mysql|postgres|postgresql):\/\//.test(spec)) {
    // One database, whoever logs in to it and however its host is written on this machine (a bug hunt
    // gave root@127.0.0.1 and root@localhost: the second writer was fenced after the first's batch, exit 1).
    const t = parseSqlTarget(spec);
    return { key: `${t.scheme}://${isLoopbackHost(t.host) ? 'loopback' : t.host.toLowerCase()}:${t.port}/${t.database}`, shown: t.display };
  }
  return { key: spec, shown: spec }; // console, or a spec parseSinkSpec will refuse
}

/** The path with its symbolic links resolved (a link to a store is that store); as given when nothing is there yet. */
function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    try {
      return join(realpathSync(dirname(path)), basename(path));
    } catch {
      return path;
    }
  }
}

/** The sinks a spec names: one, or for `delta:DIR` one per table (each Delta table commits on its own). */
export function parseSinkSpec(spec: string, logger: Logger, options: { delta?: DeltaSinkOptions } = {}): Sink[] {
  if (spec.startsWith('delta:')) return createDeltaSinks(spec, logger, options.delta);
  return [parseSingleSinkSpec(spec, logger)];
}

function parseSingleSinkSpec(spec: string, logger: Logger): Sink {
  if (spec === 'console') return new ConsoleSink(process.stdout, logger);
  if (spec.startsWith('duckdb:')) {
    const path = userPath(spec.slice('duckdb:'.length));
    if (!path) throw new UsageError('--sink duckdb needs a file: --sink duckdb:./coinstream.duckdb');
    refuseJoinedSinks(spec, path, 'store');
    // DuckDB makes the file, not its directory: a missing one failed the run after it had started (exit 1).
    const dir = dirname(resolve(path));
    if (!existsSync(dir)) throw new UsageError(`${spec}: the directory ${dir} does not exist; make it first (mkdir -p ${dir}) or give another path`);
    return new DuckDBSink(path, logger);
  }
  if (spec.startsWith('mysql://')) return createMysqlStore(spec, logger);
  if (spec.startsWith('postgres://') || spec.startsWith('postgresql://')) return createPostgresStore(spec, logger);
  throw new UsageError(`unknown sink "${spec}"; a sink is one of: ${SINK_SPEC_HELP}${joinedSpecsHint(spec, 'sink')}`);
}
