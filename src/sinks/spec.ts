// SINK SPEC (DESIGN.md): console | duckdb:PATH | mysql://USER[:PASS]@HOST:PORT/DB | postgres://USER[:PASS]@HOST:PORT/DB | delta:PATH
// The SQL stores' modules import their drivers only when opened, so `--help` loads neither mysql2 nor pg.
import { UsageError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { ConsoleSink } from './console.js';
import { SINK_SPEC_HELP, type Sink } from './contract.js';
import { DuckDBSink } from './duckdb/duckdb-sink.js';
import { createMysqlStore } from './mysql/mysql.js';
import { createPostgresStore } from './postgres/postgres.js';
import { createDeltaSinks, type DeltaSinkOptions } from './delta/delta-sink.js';

export const DEFAULT_SINKS = ['duckdb:./coinstream.duckdb', 'console'];

/** The sinks a spec names: one, or for `delta:DIR` one per table (each Delta table commits on its own). */
export function parseSinkSpec(spec: string, logger: Logger, options: { delta?: DeltaSinkOptions } = {}): Sink[] {
  if (spec.startsWith('delta:')) return createDeltaSinks(spec, logger, options.delta);
  return [parseSingleSinkSpec(spec, logger)];
}

function parseSingleSinkSpec(spec: string, logger: Logger): Sink {
  if (spec === 'console') return new ConsoleSink(process.stdout, logger);
  if (spec.startsWith('duckdb:')) {
    const path = spec.slice('duckdb:'.length);
    if (!path) throw new UsageError('--sink duckdb needs a file: --sink duckdb:./coinstream.duckdb');
    return new DuckDBSink(path, logger);
  }
  if (spec.startsWith('mysql://')) return createMysqlStore(spec, logger);
  if (spec.startsWith('postgres://') || spec.startsWith('postgresql://')) return createPostgresStore(spec, logger);
  throw new UsageError(`unknown sink "${spec}"; a sink is one of: ${SINK_SPEC_HELP}`);
}
