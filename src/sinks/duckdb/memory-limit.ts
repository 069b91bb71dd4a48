// COINSTREAM_DUCKDB_MEMORY, read and checked on its own (no DuckDB loaded), so that the sink checks it
// on the main thread when it is made: a bad value reached DuckDB in the writer thread, which said only
// "Failed to set config" (exit 1).
import { UsageError } from '../../core/errors.js';

/** A size as DuckDB's memory_limit takes it: a number and a unit (256MB, 1.5GB, 512MiB, 1000000B). */
const SIZE = /^\d+(\.\d+)?\s*(b|bytes|kb|mb|gb|tb|kib|mib|gib|tib)$/i;

/** The store's DuckDB memory_limit (see open.ts for why 128MB); a value DuckDB would refuse is a UsageError. */
export function DUCKDB_MEMORY_LIMIT(): string {
  const value = process.env.COINSTREAM_DUCKDB_MEMORY?.trim() || '128MB';
  if (!SIZE.test(value)) throw new UsageError(`COINSTREAM_DUCKDB_MEMORY="${process.env.COINSTREAM_DUCKDB_MEMORY}" is not a size DuckDB takes: give a number and a unit, e.g. 256MB or 1GB (unset: 128MB)`);
  return value;
}
