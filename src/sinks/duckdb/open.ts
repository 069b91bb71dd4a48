import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { nodeApi } from './duckdb-api.js';
import { LeanDuckDB } from './lean.js';
import { CoinstreamError } from '../../core/errors.js';

/**
 * The store's DuckDB memory_limit (COINSTREAM_DUCKDB_MEMORY, e.g. 256MB; DuckDB's own units). DuckDB's
 * default is 80% of the machine's RAM, and it keeps the blocks of the tables it appends to cached up
 * to that limit, so RSS grew for as long as a run wrote (issue 14: ~230 -> ~500 MiB over a 10M-trade
 * replay, still rising). Past the limit DuckDB evicts blocks already written to the file instead.
 * Measured over 10M trades (duckdb_memory(), 2 vCPUs): with 512MB its table blocks were still growing
 * (70 -> 142 MiB, RSS peak ~490 MiB); with 128MB they level off at ~67 MiB and RSS plateaus; 64MB is
 * flatter still but leaves little room for the keys' indexes of a store that has run for months. The
 * writer runs one DuckDB thread, and DuckDB's own guidance is ~125 MB per thread.
 */
export { DUCKDB_MEMORY_LIMIT } from './memory-limit.js';

/**
 * The store's WAL size at which DuckDB checkpoints (its default: 16 MB). At replay speed the window
 * and trend rows of each batch go through the WAL (the trades are written to the file directly), and
 * each checkpoint rewrites the tables' last, partly filled row groups, on the writer's path: over a
 * 10M-trade replay, 16 MB meant a checkpoint every ~6 batches. Measured (3 paired whole runs each):
 * 32 MB 0.94x, 64 MB 0.93x, 128 MB 0.92x the time of 16 MB at 10M, peak RSS unchanged (507-542 MiB);
 * at 1M 64 MB is 0.99x (11 rounds; no checkpoint before the last one either way).
 * The price is paid after a crash: the next open replays up to 64 MB of WAL. Measured on a slower
 * 2-vCPU VM (SIGKILL mid-replay, then the same command with --batches 1, 3 rounds each): the store
 * was open 0.75-0.84 s after start with a 16.6 MB WAL, 1.30-1.45 s with a 56 MB one.
 */
export const DUCKDB_CHECKPOINT_THRESHOLD = '64MB';

/**
 * Why the file at `path` cannot be a DuckDB store, or null if it can: a directory, a device, or a file
 * that does not start as DuckDB's do. An empty file counts as a store when `emptyIsStore` (what a kill leaves
 * while DuckDB makes a file; the writer makes it again). Throws ENOENT when there is nothing at `path`.
 */
export function whyNotDuckDB(path: string, { emptyIsStore }: { emptyIsStore: boolean }): string | null {
  const stat = statSync(path);
  if (stat.isDirectory()) return 'a directory, not a file';
  if (!stat.isFile()) return 'not a regular file';
  return (emptyIsStore && stat.size === 0) || startsLikeDuckDB(path) ? null : 'it does not start like one';
}

/** Whether the file starts as a DuckDB database does: the magic "DUCK" at byte 8 of its first header. */
export function startsLikeDuckDB(path: string): boolean {
  const head = Buffer.alloc(12);
  const fd = openSync(path, 'r');
  try {
    return readSync(fd, head, 0, 12, 0) === 12 && head.toString('latin1', 8, 12) === 'DUCK';
  } finally {
    closeSync(fd);
  }
}

export interface OpenOptions {
  readOnly?: boolean;
  threads?: number;
  memoryLimit?: string;
  checkpointThreshold?: string;
}

/** Opens (creating if needed) a DuckDB file with node-api (readers, tests, scripts). */
export async function openDuckDB(path: string, options: OpenOptions = {}): Promise<{ instance: DuckDBInstance; conn: DuckDBConnection }> {
  const instance = await opening(path, () => nodeApi().DuckDBInstance.create(path, configOf(options)));
  return { instance, conn: await instance.connect() };
}

/** Opens (creating if needed) a DuckDB file with the bindings alone: the store's writer (lean.ts). */
export function openLeanDuckDB(path: string, options: OpenOptions = {}): Promise<LeanDuckDB> {
  return opening(path, () => LeanDuckDB.open(path, configOf(options)));
}

function configOf(options: OpenOptions): Record<string, string> {
  const config: Record<string, string> = {};
  if (options.readOnly) config.access_mode = 'READ_ONLY';
  if (options.threads !== undefined) config.threads = String(options.threads);
  if (options.memoryLimit !== undefined) config.memory_limit = options.memoryLimit;
  if (options.checkpointThreshold !== undefined) config.checkpoint_threshold = options.checkpointThreshold;
  return config;
}

/** Runs an open, turning DuckDB's lock error into one that says what to do. */
async function opening<T>(path: string, open: () => Promise<T>): Promise<T> {
  try {
    return await open();
  } catch (err) {
    const message = (err as Error).message;
    if (/lock/i.test(message)) {
      throw new CoinstreamError('STORE_LOCKED', `${path} is in use by another process (a running coinstream?). Stop it, or query a copy of the file. DuckDB said: ${message.split('\n')[0]}`, true, { cause: err });
    }
    throw new CoinstreamError('SINK_FAILED', `cannot open DuckDB store ${path}: ${message}`, false, { cause: err });
  }
}

/** Opens a DuckDB file, runs `work` on a connection, and closes both whatever happens. */
export async function withDuckDB<T>(path: string, work: (conn: DuckDBConnection) => Promise<T>, options: { readOnly?: boolean } = {}): Promise<T> {
  const { instance, conn } = await openDuckDB(path, options);
  try {
    return await work(conn);
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

/** Rows of one query as plain JS objects (tests, scripts). */
export function queryRows(path: string, sql: string, options: { readOnly?: boolean } = {}): Promise<Record<string, unknown>[]> {
  return withDuckDB(path, async (conn) => (await conn.runAndReadAll(sql)).getRowObjectsJS(), options);
}
