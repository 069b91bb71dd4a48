// `--store SPEC` -> a StoreReader, for `coinstream query` and the dashboard. The spec is the --sink
// syntax of the stores: duckdb:PATH | mysql://USER[:PASS]@HOST:PORT/DB | postgres://USER[:PASS]@HOST:PORT/DB | delta:DIR.
// Each reader's module (and its driver) is loaded only for its kind.
import { UsageError } from '../core/errors.js';
import { userPath } from '../core/paths.js';
import type { StoreReader } from './contract.js';

export const STORE_SPEC_HELP = 'duckdb:PATH | mysql://USER[:PASS]@HOST:PORT/DB | postgres://USER[:PASS]@HOST:PORT/DB | delta:DIR';

/**
 * Opens a reader on the store `spec` names (connecting now: an unreachable server fails here, one
 * line, password masked). Usage errors for a spec that names no readable store.
 */
export async function openStoreReader(spec: string): Promise<StoreReader> {
  if (spec.startsWith('duckdb:')) {
    const path = userPath(spec.slice('duckdb:'.length));
    if (!path) throw new UsageError('--store duckdb needs a file: --store duckdb:./coinstream.duckdb');
    const { DuckDBReader } = await import('./duckdb/duckdb-reader.js');
    return DuckDBReader.open(path);
  }
  if (spec.startsWith('mysql://') || spec.startsWith('postgres://') || spec.startsWith('postgresql://')) {
    const { SqlReader } = await import('./sql/sql-reader.js');
    const access = spec.startsWith('mysql://')
      ? (await import('./mysql/mysql.js')).mysqlReadAccess
      : (await import('./postgres/postgres.js')).postgresReadAccess;
    return SqlReader.open(asStoreFlag(() => access(spec)));
  }
  if (spec.startsWith('delta:')) {
    const dir = userPath(spec.slice('delta:'.length));
    if (!dir) throw new UsageError('--store delta needs a directory: --store delta:./coinstream-delta');
    const { DeltaReader } = await import('./delta/delta-reader-store.js');
    return DeltaReader.open(dir);
  }
  if (spec === 'console') throw new UsageError('--store console: the console is not a store; query reads one of: ' + STORE_SPEC_HELP);
  // Only the scheme is repeated: the rest of an unknown URL may hold a password.
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(spec)?.[0];
  throw new UsageError(`--store ${scheme ? `"${scheme}..." is not a store kind coinstream can read` : `"${spec}" is not a store spec`}; a store is one of: ${STORE_SPEC_HELP}`);
}

/** The URL checks say --sink (they were written for it): here the flag is --store. */
function asStoreFlag<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw err instanceof UsageError ? new UsageError(err.message.replace(/--sink /g, '--store ')) : err;
  }
}
