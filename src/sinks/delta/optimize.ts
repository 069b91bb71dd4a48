// `coinstream optimize delta:DIR [--vacuum]`: table maintenance for the Delta store.
//
// OPTIMIZE (bin-packing compaction): a paced stream with a short trigger leaves many small files. Per
// partition, the active files smaller than the target are packed into bins of about the target size
// (by input bytes) and each bin is rewritten as one file (ParquetWriter.compact). One commit per table
// then adds the new files and removes the old ones, all with dataChange=false: readers see the same
// rows, and streaming readers tailing the log skip the commit. The removed files stay on disk as
// tombstones, so older versions stay readable (time travel) until VACUUM deletes them.
//
// Concurrency: the commit is put-if-absent like every other (DeltaTableLog). A writer that appends
// while we compact only costs a retry. A writer that *removed* one of our input files in the meantime
// (`--fresh`, another optimize) is a conflict: committing would bring its rows back. So every attempt
// first checks, against the newest snapshot, that each file we remove is still active, and the table's
// optimize is abandoned (our new files deleted) when one is not.
//
// VACUUM: deletes the files under the table directory that the current snapshot does not use and that
// are older than the retention: tombstones whose deletionTimestamp is older (younger ones keep time
// travel working) and files the log never mentioned (a crashed writer's, never committed) whose mtime
// is older (younger ones may be a live writer's, about to be committed). _delta_log and other hidden
// entries (`_x`, `.x`) are never touched.
import { existsSync } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { CoinstreamError, UsageError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { ENGINE_INFO } from './commit-info.js';
import { decodeRelativePath, encodeDeltaPath } from './files.js';
import type { AddAction, ParquetWriter } from './parquet.js';
import { HIVE_DEFAULT_PARTITION } from './partition-values.js';
import { dataFilePath, readDeltaLog, type DeltaAddFile, type DeltaSnapshot, type RawAction } from './reader.js';
import { DeltaTableLog } from './table-log.js';
import { DELTA_TABLES, type DeltaColumn, type DeltaTableDef, type DeltaTableName } from './tables.js';

export const DEFAULT_TARGET_SIZE = 128 * 1024 * 1024;
export const DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000;
/** The highest writer protocol version whose tables we may rewrite and vacuum (what coinstream writes). */
const MAX_WRITER_VERSION = 2;
const TABLE_NAMES = Object.keys(DELTA_TABLES) as DeltaTableName[];

function fail(dir: string, message: string, cause?: unknown, retriable = false): CoinstreamError {
  return new CoinstreamError(retriable ? 'SINK_FAILED' : 'CONFIG', `Delta table ${dir}: ${message}`, retriable, cause === undefined ? undefined : { cause });
}

export interface DeltaTableRef {
  /** Name for logs: the directory's base name. */
  name: string;
  dir: string;
}

/**
 * The tables of `delta:DIR`: DIR itself when it is a table (has _delta_log), else each coinstream table
 * under it that exists. UsageError when there is none.
 */
export async function findDeltaTables(dir: string): Promise<DeltaTableRef[]> {
  const root = resolve(dir);
  const isDir = async (p: string) => (await stat(p).catch(() => null))?.isDirectory() === true;
  if (!(await isDir(root))) throw new UsageError(`delta:${dir}: no such directory`);
  if (await isDir(join(root, '_delta_log'))) return [{ name: basename(root), dir: root }];
  const tables: DeltaTableRef[] = [];
  for (const name of TABLE_NAMES) {
    if (await isDir(join(root, name, '_delta_log'))) tables.push({ name, dir: join(root, name) });
  }
  if (tables.length === 0) throw new UsageError(`delta:${dir}: no Delta table there (neither a _delta_log nor any of ${TABLE_NAMES.join(', ')})`);
  return tables;
}

function checkWritable(snapshot: DeltaSnapshot): void {
  const { minWriterVersion } = snapshot.protocol;
  if (minWriterVersion > MAX_WRITER_VERSION || (snapshot.protocol.writerFeatures?.length ?? 0) > 0) {
    throw fail(snapshot.tableDir, `needs Delta writer version ${minWriterVersion}${snapshot.protocol.writerFeatures?.length ? ` (features ${snapshot.protocol.writerFeatures.join(', ')})` : ''}; coinstream optimizes and vacuums writer versions 1 to ${MAX_WRITER_VERSION} only`);
  }
}

// ---------------------------------------------------------------------------------------------
// OPTIMIZE

export interface OptimizeOptions {
  /** Bin size by input bytes; files at least this big are left alone. */
  targetSize?: number;
  /** Plan only: write and commit nothing. */
  dryRun?: boolean;
  logger: Logger;
  /** Called after the new files are written, before the commit (tests: make a concurrent writer win the race). */
  beforeCommit?: () => Promise<void>;
}

export interface OptimizeResult {
  table: string;
  filesBefore: number;
  filesAfter: number;
  bytesBefore: number;
  bytesAfter: number;
  /** Files rewritten (removed) and written (added). */
  removed: number;
  added: number;
  /** The OPTIMIZE commit's version; null when nothing was committed. */
  version: number | null;
  /** Why the table's optimize was abandoned (a concurrent writer removed one of its files). */
  conflict?: string;
  durationMs: number;
}

/** One output file: input files of one partition. */
interface Bin {
  partitionValues: Record<string, string | null>;
  files: DeltaAddFile[];
  bytes: number;
}

/** The data columns of the table from its schema, for ParquetWriter.compact (only primitive types we write). */
function tableDefOf(snapshot: DeltaSnapshot, name: string): DeltaTableDef {
  const partition = new Set(snapshot.metaData.partitionColumns);
  const allowed = new Set<string>(['string', 'timestamp', 'long', 'integer', 'double', 'boolean', 'date']);
  const columns: DeltaColumn[] = [];
  for (const f of snapshot.metaData.schema.fields) {
    if (partition.has(f.name)) continue;
    if (typeof f.type !== 'string' || !allowed.has(f.type)) {
      throw fail(snapshot.tableDir, `column ${f.name} has type ${JSON.stringify(f.type)}, which coinstream optimize does not rewrite`);
    }
    columns.push({ name: f.name, type: f.type as DeltaColumn['type'], nullable: f.nullable !== false });
  }
  // `name` and `dateOf` only matter when writing a batch, not when compacting files.
  const known = (TABLE_NAMES as string[]).includes(name) ? (name as DeltaTableName) : 'trade_windows';
  return { name: known, columns, dateOf: DELTA_TABLES[known].dateOf };
}

/** Hive-style directory of a partition (`date=2019-07-01/`), as the writer lays files out. */
function partitionDirOf(partitionColumns: string[], values: Record<string, string | null>): string {
  return partitionColumns.map((c) => `${escapePathName(c)}=${values[c] == null || values[c] === '' ? HIVE_DEFAULT_PARTITION : escapePathName(values[c]!)}/`).join('');
}

/** Hive's escaping of a path segment: characters that would break a path or a `k=v` pair become %XX. */
function escapePathName(s: string): string {
  return s.replace(/[\x00-\x1f\x7f"#%'*/:=?\\{[\]^]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/** Groups small files by partition and packs each group, oldest first, into bins of about `target` bytes. Bins of one file are dropped. */
export function planBins(snapshot: DeltaSnapshot, target: number): Bin[] {
  const groups = new Map<string, DeltaAddFile[]>();
  for (const f of snapshot.files) {
    if (f.size >= target || f.deletionVector || isAbsolute(f.path) || /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(f.path)) continue;
    const key = JSON.stringify(snapshot.metaData.partitionColumns.map((c) => f.partitionValues[c] ?? null));
    const group = groups.get(key) ?? [];
    group.push(f);
    groups.set(key, group);
  }
  const bins: Bin[] = [];
  for (const files of groups.values()) {
    if (files.length < 2) continue;
    files.sort((a, b) => a.modificationTime - b.modificationTime);
    let bin: Bin | null = null;
    for (const f of files) {
      if (bin && bin.bytes + f.size > target) {
        if (bin.files.length > 1) bins.push(bin);
        bin = null;
      }
      bin ??= { partitionValues: f.partitionValues, files: [], bytes: 0 };
      bin.files.push(f);
      bin.bytes += f.size;
    }
    if (bin && bin.files.length > 1) bins.push(bin);
  }
  return bins;
}

/** Compacts one table's small files: one commit, or none when there is nothing to compact. */
export async function optimizeTable(table: DeltaTableRef, files: ParquetWriter, options: OptimizeOptions): Promise<OptimizeResult> {
  const started = performance.now();
  const { logger } = options;
  const target = options.targetSize ?? DEFAULT_TARGET_SIZE;
  const snapshot = await readDeltaLog(table.dir);
  checkWritable(snapshot);
  const bytesBefore = snapshot.files.reduce((n, f) => n + f.size, 0);
  const result: OptimizeResult = {
    table: table.name,
    filesBefore: snapshot.files.length,
    filesAfter: snapshot.files.length,
    bytesBefore,
    bytesAfter: bytesBefore,
    removed: 0,
    added: 0,
    version: null,
    durationMs: 0,
  };
  const done = () => ((result.durationMs = performance.now() - started), result);
  const bins = planBins(snapshot, target);
  if (bins.length === 0) return done();
  const def = tableDefOf(snapshot, table.name);
  const removing = bins.flatMap((b) => b.files);
  if (options.dryRun) {
    result.removed = removing.length;
    result.added = bins.length;
    result.filesAfter = snapshot.files.length - removing.length + bins.length;
    return done();
  }

  // The log as of now: a commit made while we write the files makes our first attempt lose the race.
  const log = new DeltaTableLog(snapshot.tableDir, logger);
  await log.open({ schemaString: snapshot.metaData.schemaString, partitionColumns: snapshot.metaData.partitionColumns });

  // Write the new files; any failure removes what was written (nothing refers to it yet).
  const adds: AddAction[] = [];
  const dropNewFiles = () => Promise.all(adds.map((a) => rm(join(snapshot.tableDir, decodeRelativePath(a.path)), { force: true })));
  try {
    for (const bin of bins) {
      const sources = bin.files.map((f) => dataFilePath(snapshot, f));
      const add = await files.compact(def, sources, snapshot.tableDir, partitionDirOf(snapshot.metaData.partitionColumns, bin.partitionValues), bin.partitionValues);
      adds.push(add);
      // The new file must hold what the old ones held: compare row counts where the log has them.
      const expected = bin.files.every((f) => typeof f.stats?.numRecords === 'number') ? bin.files.reduce((n, f) => n + Number(f.stats!.numRecords), 0) : undefined;
      const got = (JSON.parse(add.stats) as { numRecords?: number }).numRecords;
      if (expected !== undefined && got !== expected) {
        throw fail(snapshot.tableDir, `compacting ${bin.files.length} files gave ${got} rows where their statistics say ${expected}; nothing committed`);
      }
    }
    await options.beforeCommit?.();

    const now = Date.now();
    const addedBytes = adds.reduce((n, a) => n + a.size, 0);
    const removedBytes = removing.reduce((n, f) => n + f.size, 0);
    const actions: RawAction[] = [
      ...adds.map((add) => ({ add })),
      ...removing.map((f) => ({ remove: { path: encodeDeltaPath(f.path), deletionTimestamp: now, dataChange: false, extendedFileMetadata: true, partitionValues: f.partitionValues, size: f.size } })),
      {
        commitInfo: {
          timestamp: now,
          operation: 'OPTIMIZE',
          operationParameters: { predicate: '[]', targetSize: String(target) },
          readVersion: snapshot.version,
          isolationLevel: 'SnapshotIsolation',
          isBlindAppend: false,
          operationMetrics: { numRemovedFiles: String(removing.length), numRemovedBytes: String(removedBytes), numAddedFiles: String(adds.length), numAddedBytes: String(addedBytes) },
          engineInfo: ENGINE_INFO,
        },
      },
    ];

    // Every file we remove must still be in the table the commit follows: checked now, and again
    // after each race lost to another writer (a --fresh removes them all).
    let conflict: { gone: number; first: string; version: number } | null = null;
    const stillValid = async () => {
      const current = await readDeltaLog(snapshot.tableDir);
      const active = new Set(current.files.filter((f) => !f.deletionVector).map((f) => f.path));
      const gone = removing.filter((f) => !active.has(f.path));
      if (gone.length > 0) conflict = { gone: gone.length, first: gone[0].path, version: current.version };
      return gone.length === 0;
    };
    const version = (await stillValid()) ? await log.commit(actions, undefined, files, stillValid) : null;
    if (version === null) {
      await dropNewFiles();
      const c = conflict as { gone: number; first: string; version: number } | null;
      if (!c) throw fail(snapshot.tableDir, 'OPTIMIZE was not committed', undefined, true);
      result.conflict = `${c.gone} of the ${removing.length} files to compact (e.g. ${c.first}) were removed by a concurrent commit (version ${c.version}); optimize abandoned for this table, nothing committed`;
      logger.warn({ table: snapshot.tableDir, gone: c.gone, version: c.version }, `${table.name}: ${result.conflict}`);
      return done();
    }
    result.version = version;
    result.removed = removing.length;
    result.added = adds.length;
    result.filesAfter = snapshot.files.length - removing.length + adds.length;
    result.bytesAfter = bytesBefore - removedBytes + addedBytes;
    return done();
  } catch (err) {
    if (result.version === null) await dropNewFiles();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// VACUUM

export interface VacuumOptions {
  retentionMs?: number;
  dryRun?: boolean;
  /** For tests; default Date.now(). */
  now?: number;
}

export interface VacuumResult {
  table: string;
  /** Paths (relative to the table) deleted, or to delete with dryRun. */
  deleted: string[];
  bytesFreed: number;
  /** Of those: removed files (expired tombstones or forgotten ones) and files the log never named. */
  expiredTombstones: number;
  orphans: number;
  /** Unreferenced files kept because they are younger than the retention. */
  keptRecent: number;
  activeFiles: number;
  durationMs: number;
}

/** Every regular file under `dir`, relative, leaving out hidden entries (`_delta_log`, `_x`, `.x`) at any depth. */
async function listDataFiles(root: string, dir = root, out: string[] = []): Promise<string[]> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('_') || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    // A directory with a _delta_log of its own is another table (a store made inside this one by
    // mistake): its files are not this table's to delete, whatever this table's log says.
    if (entry.isDirectory() && existsSync(join(path, '_delta_log'))) continue;
    if (entry.isDirectory()) await listDataFiles(root, path, out);
    else if (entry.isFile()) out.push(relative(root, path));
  }
  return out;
}

/** How long a data file the log does not name is kept whatever the retention: a writer may be about to commit it. */
export const ORPHAN_MIN_AGE_MS = 3_600_000;

/** Deletes the table's files that its current snapshot does not need and that are older than the retention. */
export async function vacuumTable(table: DeltaTableRef, options: VacuumOptions = {}): Promise<VacuumResult> {
  const started = performance.now();
  const retention = options.retentionMs ?? DEFAULT_RETENTION_MS;
  const now = options.now ?? Date.now();
  const cutoff = now - retention;
  const snapshot = await readDeltaLog(table.dir);
  checkWritable(snapshot);
  const key = (f: { path: string }) => resolve(dataFilePath(snapshot, f));
  const active = new Set(snapshot.files.map(key));
  const tombstones = new Map(snapshot.tombstones.map((t) => [key(t), t.deletionTimestamp ?? null]));
  const result: VacuumResult = { table: table.name, deleted: [], bytesFreed: 0, expiredTombstones: 0, orphans: 0, keptRecent: 0, activeFiles: snapshot.files.length, durationMs: 0 };
  for (const rel of await listDataFiles(snapshot.tableDir)) {
    const abs = join(snapshot.tableDir, rel);
    if (active.has(abs)) continue;
    const st = await stat(abs).catch(() => null);
    if (!st) continue; // gone meanwhile
    const deletedAt = tombstones.get(abs);
    // A tombstone counts from its removal; a file the log does not name, from when it was written, and
    // for at least ORPHAN_MIN_AGE_MS: it may be one a running writer has just written and is about to
    // commit (a vacuum at --retention 0s beside a run deleted such files, and the run's next commits
    // named files that were gone).
    const since = deletedAt ?? st.mtimeMs;
    if (since > (deletedAt === undefined ? Math.min(cutoff, now - ORPHAN_MIN_AGE_MS) : cutoff)) {
      result.keptRecent++;
      continue;
    }
    if (tombstones.has(abs)) result.expiredTombstones++;
    else result.orphans++;
    result.deleted.push(rel.split(sep).join('/'));
    result.bytesFreed += st.size;
    if (!options.dryRun) await rm(abs, { force: true });
  }
  result.durationMs = performance.now() - started;
  return result;
}
