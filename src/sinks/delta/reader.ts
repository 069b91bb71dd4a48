// A Delta Lake reader (protocol: ../shared/data/delta/DELTA-PROTOCOL.md): replays _delta_log into a
// snapshot (readDeltaLog) and reads the rows of its active files with DuckDB (readDeltaTable).
//
// Supported: reader version 1; reader versions 2/3 when column mapping is off and every reader feature
// is one we honour (timestampNtz, vacuumProtocolCheck, deletionVectors while no active file has one);
// classic and multi-part V1 checkpoints; time travel to any version the log still covers.
// Not supported (refused with a CONFIG error): column mapping, deletion vectors on files, V2 checkpoints
// and sidecars, type widening, variant, catalog-managed tables, remote (non-file) paths.

import { readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoinstreamError } from '../../core/errors.js';
import { withDuckDB } from '../duckdb/open.js';
import { commitName, listLog, readLastCheckpoint, type CheckpointFiles, type LogListing } from './log.js';
import { partitionValueSql } from './partition-values.js';
import { parseSchemaString, quoteIdent, quoteString, sqlType, type DeltaStructType } from './schema.js';

export type { DeltaStructType, DeltaStructField, DeltaType } from './schema.js';

/** The reader protocol versions and features this reader implements. */
export const MAX_READER_VERSION = 3;
export const SUPPORTED_READER_FEATURES: readonly string[] = ['timestampNtz', 'vacuumProtocolCheck', 'deletionVectors', 'columnMapping'];

export interface DeltaProtocol {
  minReaderVersion: number;
  minWriterVersion: number;
  readerFeatures?: string[];
  writerFeatures?: string[];
}

export interface DeltaMetaData {
  id: string;
  name?: string | null;
  description?: string | null;
  format: { provider: string; options: Record<string, string> };
  schemaString: string;
  /** schemaString, parsed. */
  schema: DeltaStructType;
  partitionColumns: string[];
  configuration: Record<string, string>;
  createdTime?: number | null;
}

/** Per-file statistics ("Per-file Statistics"), parsed from add.stats. */
export interface DeltaFileStats {
  numRecords?: number;
  minValues?: Record<string, unknown>;
  maxValues?: Record<string, unknown>;
  nullCount?: Record<string, unknown>;
  tightBounds?: boolean;
  [key: string]: unknown;
}

export interface DeltaDeletionVector {
  storageType: string;
  pathOrInlineDv: string;
  offset?: number | null;
  sizeInBytes: number;
  cardinality: number;
}

export interface DeltaAddFile {
  /** The data file's path, URL-decoded: relative to the table root, or absolute (file: URIs become local paths). */
  path: string;
  partitionValues: Record<string, string | null>;
  size: number;
  modificationTime: number;
  dataChange: boolean;
  stats?: DeltaFileStats;
  tags?: Record<string, string | null>;
  deletionVector?: DeltaDeletionVector;
}

export interface DeltaRemoveFile {
  path: string;
  deletionTimestamp?: number | null;
  dataChange: boolean;
  partitionValues?: Record<string, string | null>;
  size?: number | null;
  deletionVector?: DeltaDeletionVector;
}

export interface DeltaSnapshot {
  /** Absolute path of the table root. */
  tableDir: string;
  version: number;
  protocol: DeltaProtocol;
  metaData: DeltaMetaData;
  /** Active files (add actions that survived reconciliation), in log order. */
  files: DeltaAddFile[];
  /** Remove actions still in the state (for VACUUM); never part of a read. */
  tombstones: DeltaRemoveFile[];
  /** Latest txn version per appId (exactly-once writers: skip a batch whose version <= this). */
  txns: Map<string, number>;
  /** The checkpoint the replay started from, or null when it replayed every commit from 0. */
  checkpointVersion: number | null;
}

export interface ReadDeltaLogOptions {
  /** A version to time-travel to; the latest when absent. */
  version?: number;
}

export interface ReadDeltaTableOptions extends ReadDeltaLogOptions {
  /** Columns to return, in this order; every schema column (in schema order) when absent. */
  columns?: string[];
  /** A snapshot already read with readDeltaLog (then `version` is ignored). */
  snapshot?: DeltaSnapshot;
}

function fail(dir: string, message: string, cause?: unknown): CoinstreamError {
  return new CoinstreamError('CONFIG', `Delta table ${dir}: ${message}`, false, cause === undefined ? undefined : { cause });
}

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split('\n')[0];
}

// ---------------------------------------------------------------------------------------------
// Log replay

export type RawAction = Record<string, unknown>;

class ReplayState {
  protocol: RawAction | undefined;
  metaData: RawAction | undefined;
  readonly active = new Map<string, DeltaAddFile>();
  readonly tombstones = new Map<string, DeltaRemoveFile>();
  readonly txns = new Map<string, number>();

  constructor(private readonly dir: string) {}

  apply(action: RawAction, where: string): void {
    if (action.add != null) {
      const add = toAddFile(action.add as RawAction, this.dir, where);
      const key = fileKey(add.path, add.deletionVector);
      this.active.delete(key); // re-insert: the newest add wins and goes to the end
      this.active.set(key, add);
      this.tombstones.delete(key);
    } else if (action.remove != null) {
      const remove = toRemoveFile(action.remove as RawAction, this.dir, where);
      const key = fileKey(remove.path, remove.deletionVector);
      this.active.delete(key);
      this.tombstones.set(key, remove);
    } else if (action.txn != null) {
      const txn = action.txn as RawAction;
      if (typeof txn.appId !== 'string' || typeof txn.version !== 'number') throw fail(this.dir, `${where}: txn action without appId/version`);
      this.txns.set(txn.appId, txn.version);
    } else if (action.protocol != null) {
      this.protocol = action.protocol as RawAction;
    } else if (action.metaData != null) {
      this.metaData = action.metaData as RawAction;
    }
    // commitInfo, cdc, domainMetadata and unknown actions do not change what a reader returns.
  }
}

function fileKey(path: string, dv: DeltaDeletionVector | undefined): string {
  return dv ? `${path}\u0000${dv.storageType}${dv.pathOrInlineDv}${dv.offset == null ? '' : `@${dv.offset}`}` : path;
}

const URI_SCHEME = /^[a-zA-Z][a-zA-Z0-9+.-]*:/;

/** add.path / remove.path are RFC 2396 URIs: decode them; file: URIs become local absolute paths. */
export function decodeDeltaPath(raw: string): string {
  if (URI_SCHEME.test(raw) && !/^[a-zA-Z]:[\\/]/.test(raw)) {
    if (raw.startsWith('file:')) return fileURLToPath(raw);
    return decodeURI(raw);
  }
  return decodeURIComponent(raw);
}

function decodePath(raw: unknown, dir: string, where: string): string {
  if (typeof raw !== 'string' || raw === '') throw fail(dir, `${where}: file action without a path`);
  try {
    return decodeDeltaPath(raw);
  } catch (err) {
    throw fail(dir, `${where}: path ${JSON.stringify(raw)} is not a valid URI (${firstLine(err)})`, err);
  }
}

function stringMap(value: unknown): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = v == null ? null : String(v);
  }
  return out;
}

function parseStats(add: RawAction): DeltaFileStats | undefined {
  if (typeof add.stats === 'string' && add.stats !== '') {
    try {
      const parsed = JSON.parse(add.stats) as unknown;
      if (parsed && typeof parsed === 'object') return parsed as DeltaFileStats;
    } catch {
      // Statistics are optional: unreadable ones are as good as none.
    }
    return undefined;
  }
  if (add.stats_parsed && typeof add.stats_parsed === 'object') return add.stats_parsed as DeltaFileStats; // checkpoints
  return undefined;
}

function toDeletionVector(value: unknown): DeltaDeletionVector | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const dv = value as Record<string, unknown>;
  return {
    storageType: String(dv.storageType),
    pathOrInlineDv: String(dv.pathOrInlineDv),
    offset: typeof dv.offset === 'number' ? dv.offset : null,
    sizeInBytes: Number(dv.sizeInBytes),
    cardinality: Number(dv.cardinality),
  };
}

function toAddFile(add: RawAction, dir: string, where: string): DeltaAddFile {
  const file: DeltaAddFile = {
    path: decodePath(add.path, dir, where),
    partitionValues: stringMap(add.partitionValues),
    size: Number(add.size),
    modificationTime: Number(add.modificationTime),
    dataChange: add.dataChange === true,
  };
  const stats = parseStats(add);
  if (stats) file.stats = stats;
  if (add.tags && typeof add.tags === 'object') file.tags = stringMap(add.tags);
  const dv = toDeletionVector(add.deletionVector);
  if (dv) file.deletionVector = dv;
  return file;
}

function toRemoveFile(remove: RawAction, dir: string, where: string): DeltaRemoveFile {
  const file: DeltaRemoveFile = {
    path: decodePath(remove.path, dir, where),
    deletionTimestamp: typeof remove.deletionTimestamp === 'number' ? remove.deletionTimestamp : null,
    dataChange: remove.dataChange === true,
  };
  if (remove.partitionValues && typeof remove.partitionValues === 'object') file.partitionValues = stringMap(remove.partitionValues);
  if (typeof remove.size === 'number') file.size = remove.size;
  const dv = toDeletionVector(remove.deletionVector);
  if (dv) file.deletionVector = dv;
  return file;
}

/** The actions of one JSON commit, in order. */
export async function readCommit(logDir: string, version: number, dir: string): Promise<RawAction[]> {
  const name = commitName(version);
  let text: string;
  try {
    text = await readFile(join(logDir, name), 'utf8');
  } catch (err) {
    throw fail(dir, `cannot read commit _delta_log/${name} (${firstLine(err)})`, err);
  }
  const actions: RawAction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (err) {
      throw fail(dir, `_delta_log/${name} line ${i + 1} is not JSON (${firstLine(err)})`, err);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw fail(dir, `_delta_log/${name} line ${i + 1} is not an action object`);
    actions.push(parsed as RawAction);
  }
  return actions;
}

const CHECKPOINT_COLUMNS = ['protocol', 'metaData', 'txn', 'add', 'remove'];

async function readCheckpoint(logDir: string, checkpoint: CheckpointFiles, dir: string): Promise<RawAction[]> {
  const list = `[${checkpoint.files.map((f) => quoteString(join(logDir, f))).join(', ')}]`;
  const source = `read_parquet(${list}, hive_partitioning=false, union_by_name=true)`;
  try {
    return await withDuckDB(':memory:', async (conn) => {
      const described = (await conn.runAndReadAll(`DESCRIBE SELECT * FROM ${source}`)).getRowObjectsJS();
      const present = new Set(described.map((r) => String(r.column_name)));
      const columns = CHECKPOINT_COLUMNS.filter((c) => present.has(c));
      if (columns.length === 0) return [];
      const sql = `SELECT ${columns.map((c) => `to_json(${quoteIdent(c)}) AS ${quoteIdent(c)}`).join(', ')} FROM ${source}`;
      const actions: RawAction[] = [];
      for (const row of (await conn.runAndReadAll(sql)).getRowObjectsJS()) {
        for (const c of columns) {
          const json = row[c];
          if (typeof json === 'string') actions.push({ [c]: JSON.parse(json) as unknown });
        }
      }
      return actions;
    });
  } catch (err) {
    if (err instanceof CoinstreamError && err.code === 'CONFIG') throw err;
    throw fail(dir, `cannot read checkpoint _delta_log/${checkpoint.files[0]} (${firstLine(err)})`, err);
  }
}

/** Picks the newest complete checkpoint at or before `target` (_last_checkpoint first, then the listing). */
function chooseCheckpoint(listing: LogListing, target: number, hint: { version: number } | undefined): CheckpointFiles | undefined {
  let best: CheckpointFiles | undefined;
  if (hint && hint.version <= target) best = listing.checkpoints.get(hint.version);
  for (const cp of listing.checkpoints.values()) {
    if (cp.version <= target && (!best || cp.version > best.version)) best = cp;
  }
  return best;
}

function checkProtocol(protocol: DeltaProtocol, configuration: Record<string, string>, dir: string): void {
  const { minReaderVersion } = protocol;
  if (!Number.isInteger(minReaderVersion) || minReaderVersion < 1) throw fail(dir, `invalid protocol minReaderVersion ${JSON.stringify(minReaderVersion)}`);
  if (minReaderVersion > MAX_READER_VERSION) {
    throw fail(dir, `needs Delta reader version ${minReaderVersion}; coinstream reads reader versions 1 to ${MAX_READER_VERSION} only`);
  }
  if (minReaderVersion === 3) {
    const unsupported = (protocol.readerFeatures ?? []).filter((f) => !SUPPORTED_READER_FEATURES.includes(f));
    if (unsupported.length > 0) throw fail(dir, `uses Delta reader features coinstream does not support: ${unsupported.join(', ')}`);
  }
  const mapping = configuration['delta.columnMapping.mode'];
  if (minReaderVersion >= 2 && mapping !== undefined && mapping !== 'none') {
    throw fail(dir, `uses column mapping (delta.columnMapping.mode=${mapping}), which coinstream does not support`);
  }
}

function toProtocol(raw: RawAction): DeltaProtocol {
  const protocol: DeltaProtocol = { minReaderVersion: Number(raw.minReaderVersion), minWriterVersion: Number(raw.minWriterVersion) };
  if (Array.isArray(raw.readerFeatures)) protocol.readerFeatures = raw.readerFeatures.map(String);
  if (Array.isArray(raw.writerFeatures)) protocol.writerFeatures = raw.writerFeatures.map(String);
  return protocol;
}

function toMetaData(raw: RawAction, dir: string): DeltaMetaData {
  if (typeof raw.schemaString !== 'string') throw fail(dir, 'metaData has no schemaString');
  let schema: DeltaStructType;
  try {
    schema = parseSchemaString(raw.schemaString);
  } catch (err) {
    throw fail(dir, `bad table schema: ${firstLine(err)}`, err);
  }
  const format = (raw.format ?? {}) as RawAction;
  const partitionColumns = Array.isArray(raw.partitionColumns) ? raw.partitionColumns.map(String) : [];
  for (const column of partitionColumns) {
    if (!schema.fields.some((f) => f.name === column)) throw fail(dir, `partition column ${column} is not in the schema`);
  }
  const configuration: Record<string, string> = {};
  for (const [k, v] of Object.entries(stringMap(raw.configuration))) if (v !== null) configuration[k] = v;
  const options: Record<string, string> = {};
  for (const [k, v] of Object.entries(stringMap(format.options))) if (v !== null) options[k] = v;
  return {
    id: String(raw.id),
    name: (raw.name as string | null | undefined) ?? null,
    description: (raw.description as string | null | undefined) ?? null,
    format: { provider: typeof format.provider === 'string' ? format.provider : 'parquet', options },
    schemaString: raw.schemaString,
    schema,
    partitionColumns,
    configuration,
    createdTime: typeof raw.createdTime === 'number' ? raw.createdTime : null,
  };
}

/**
 * The table's state at its latest version (or `options.version`): starts from the newest complete
 * checkpoint at or before that version, when there is one, and applies the JSON commits after it.
 * Throws CoinstreamError('CONFIG') for a missing/unreadable log, a gap in the commits, or a protocol
 * this reader does not support.
 */
export async function readDeltaLog(dir: string, options: ReadDeltaLogOptions = {}): Promise<DeltaSnapshot> {
  const tableDir = resolve(dir);
  const logDir = join(tableDir, '_delta_log');
  let listing: LogListing;
  try {
    listing = await listLog(logDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw fail(tableDir, 'not a Delta table (no _delta_log directory)', err);
    throw fail(tableDir, `cannot list _delta_log (${firstLine(err)})`, err);
  }
  const versions = [...listing.commits, ...listing.checkpoints.keys()];
  if (versions.length === 0) throw fail(tableDir, 'not a Delta table (_delta_log has no commits)');
  const latest = Math.max(...versions);
  const target = options.version ?? latest;
  if (!Number.isInteger(target) || target < 0) throw fail(tableDir, `version ${target} is not a table version (a whole number >= 0)`);
  if (target > latest) throw fail(tableDir, `version ${target} does not exist (latest is ${latest})`);

  const checkpoint = chooseCheckpoint(listing, target, await readLastCheckpoint(logDir));
  const first = checkpoint ? checkpoint.version + 1 : 0;
  for (let v = first; v <= target; v++) {
    if (!listing.commits.has(v)) {
      const from = checkpoint ? `checkpoint ${checkpoint.version}` : 'version 0';
      throw fail(tableDir, `commit _delta_log/${commitName(v)} is missing: cannot rebuild version ${target} from ${from} (the log has a gap or was cleaned up)`);
    }
  }

  const state = new ReplayState(tableDir);
  if (checkpoint) {
    for (const action of await readCheckpoint(logDir, checkpoint, tableDir)) state.apply(action, `checkpoint ${checkpoint.version}`);
  }
  for (let v = first; v <= target; v++) {
    for (const action of await readCommit(logDir, v, tableDir)) state.apply(action, `_delta_log/${commitName(v)}`);
  }

  if (!state.protocol) throw fail(tableDir, `no protocol action up to version ${target}`);
  if (!state.metaData) throw fail(tableDir, `no metaData action up to version ${target}`);
  const protocol = toProtocol(state.protocol);
  const rawConfiguration = stringMap(state.metaData.configuration);
  checkProtocol(protocol, Object.fromEntries(Object.entries(rawConfiguration).filter((e): e is [string, string] => e[1] !== null)), tableDir);
  const metaData = toMetaData(state.metaData, tableDir);

  return {
    tableDir,
    version: target,
    protocol,
    metaData,
    files: [...state.active.values()],
    tombstones: [...state.tombstones.values()],
    txns: state.txns,
    checkpointVersion: checkpoint ? checkpoint.version : null,
  };
}

// ---------------------------------------------------------------------------------------------
// Data

/** Where a file of the table is on this machine. */
export function dataFilePath(snapshot: DeltaSnapshot, file: { path: string }): string {
  if (URI_SCHEME.test(file.path) && !/^[a-zA-Z]:[\\/]/.test(file.path)) {
    throw fail(snapshot.tableDir, `file ${file.path} is not on the local file system`);
  }
  return isAbsolute(file.path) ? file.path : join(snapshot.tableDir, file.path);
}

/**
 * Rows of the table at its latest version (or `options.version`): the Parquet columns of every active
 * file plus its partition columns, typed by the schema (long -> bigint, int/short/byte/float/double/
 * decimal -> number, date/timestamp -> Date, like DuckDB's JS values). Row order: file by file, in log
 * order, rows in file order. Throws CoinstreamError('CONFIG').
 */
export async function readDeltaTable(dir: string, options: ReadDeltaTableOptions = {}): Promise<Record<string, unknown>[]> {
  const snapshot = options.snapshot ?? (await readDeltaLog(dir, { version: options.version }));
  const { tableDir, metaData } = snapshot;
  const fields = metaData.schema.fields;
  const columns = options.columns ?? fields.map((f) => f.name);
  if (columns.length === 0) throw fail(tableDir, 'no columns asked for');
  const byName = new Map(fields.map((f) => [f.name, f]));
  for (const c of columns) {
    if (!byName.has(c)) throw fail(tableDir, `no column ${c} (columns: ${fields.map((f) => f.name).join(', ')})`);
  }
  if (snapshot.files.length === 0) return [];

  const partitionIndex = new Map(metaData.partitionColumns.map((c, i) => [c, i]));
  const valueRows: string[] = [];
  snapshot.files.forEach((file, i) => {
    if (file.deletionVector) throw fail(tableDir, `file ${file.path} has a deletion vector, which coinstream does not support`);
    const cells = [String(i), quoteString(dataFilePath(snapshot, file))];
    for (const column of metaData.partitionColumns) {
      try {
        cells.push(partitionValueSql(partitionValueOf(file.partitionValues, column), byName.get(column)!.type));
      } catch (err) {
        throw fail(tableDir, `file ${file.path}, partition column ${column}: ${firstLine(err)}`, err);
      }
    }
    valueRows.push(`(${cells.join(', ')})`);
  });
  const pvColumns = ['__delta_index', '__delta_file', ...metaData.partitionColumns.map((_, i) => `__delta_p${i}`)];
  const list = `[${snapshot.files.map((f) => quoteString(dataFilePath(snapshot, f))).join(', ')}]`;

  try {
    return await withDuckDB(':memory:', async (conn) => {
      const plain = `read_parquet(${list}, hive_partitioning=false, union_by_name=true)`;
      const present = new Map<string, string>();
      for (const r of (await conn.runAndReadAll(`DESCRIBE SELECT * FROM ${plain}`)).getRowObjectsJS()) {
        present.set(String(r.column_name).toLowerCase(), String(r.column_name));
      }
      const rowNumber = !present.has('file_row_number');
      const source = `read_parquet(${list}, hive_partitioning=false, union_by_name=true, filename='__delta_file'${rowNumber ? ', file_row_number=true' : ''})`;
      const select = columns.map((name) => {
        const p = partitionIndex.get(name);
        if (p !== undefined) return `__pv.${quoteIdent(`__delta_p${p}`)} AS ${quoteIdent(name)}`;
        const physical = present.get(name.toLowerCase());
        if (physical !== undefined) return `__d.${quoteIdent(physical)} AS ${quoteIdent(name)}`;
        return `CAST(NULL AS ${sqlType(byName.get(name)!.type)}) AS ${quoteIdent(name)}`; // not in any file: null
      });
      const sql =
        `WITH __pv(${pvColumns.map(quoteIdent).join(', ')}) AS (VALUES ${valueRows.join(', ')}) ` +
        `SELECT ${select.join(', ')} FROM ${source} AS __d JOIN __pv ON __d.__delta_file = __pv.__delta_file ` +
        `ORDER BY __pv.__delta_index${rowNumber ? ', __d.file_row_number' : ''}`;
      return (await conn.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
    });
  } catch (err) {
    if (err instanceof CoinstreamError && err.code === 'CONFIG') throw err;
    throw fail(tableDir, `cannot read data files at version ${snapshot.version} (${firstLine(err)})`, err);
  }
}

function partitionValueOf(values: Record<string, string | null>, column: string): string | null {
  if (Object.hasOwn(values, column)) return values[column];
  const lower = column.toLowerCase();
  for (const [k, v] of Object.entries(values)) if (k.toLowerCase() === lower) return v;
  return null;
}
