import { existsSync } from 'node:fs';
import { UsageError } from './errors.js';

// Lists elsewhere are often comma-separated, and `--sink duckdb:a.duckdb,console` (or the same in
// COINSTREAM_SINK) was taken as one DuckDB file named "a.duckdb,console", made without a word;
// `--source replay:a.jsonl,replay:b.jsonl` said only that no such file exists. A comma is allowed
// in a path, so this only names what was probably meant, where a spec would otherwise be refused or
// make a file nobody asked for.

/** The spec kinds that may follow a comma when two specs were joined into one. */
const KINDS = {
  source: /,\s*(replay|synthetic|coincap|coincap-prices|binance|coinbase|kraken|bybit|okx)(:|,|$)/,
  sink: /,\s*(console|duckdb:|delta:|mysql:\/\/|postgres:\/\/|postgresql:\/\/)/,
};

/** A hint to add to an error about `spec` when it looks like two specs joined by a comma; '' otherwise. */
export function joinedSpecsHint(spec: string, kind: 'source' | 'sink'): string {
  if (!KINDS[kind].test(spec)) return '';
  const env = kind === 'source' ? 'COINSTREAM_SOURCE' : 'COINSTREAM_SINK';
  return `; it looks like several ${kind}s in one: give each its own --${kind} (in ${env}, separate them with spaces, not commas)`;
}

/**
 * A store spec that looks like several sinks joined by a comma, naming nothing that is there (`what`:
 * "store", "directory"), is refused: it would make a store under the joined name. One that is there is used.
 */
export function refuseJoinedSinks(spec: string, path: string, what: string): void {
  const joined = joinedSpecsHint(spec, 'sink');
  if (joined && !existsSync(path)) throw new UsageError(`--sink ${spec}: no such ${what}${joined}`);
}
