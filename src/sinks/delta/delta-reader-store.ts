// Reading a `delta:DIR` store back (`coinstream query`, `dashboard`): the snapshot of each table
// (trade_windows, price_trends, rejected_trades) as its log holds it, copied into an in-memory DuckDB
// under the DuckDB store's names and types and loaded again when a log has moved on since
// (DeltaReader.current), then asked with the DuckDB reader's own SQL, so that every store prints the
// same table byte for byte.
//
// The tables are append-only: a window key appears twice only in a table written by a coinstream of
// before 2026-11-26, which rewrote a finished job's final windows when the job read on (it now keeps
// them final: WindowEngine.sealFinished). The newest row wins: the last one in log order (file by
// file as the snapshot lists them, rows in file order), as readDeltaTable returns them. Progress
// comes from the commits of trade_windows, the table each batch is written to last.
import { resolve, join } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { CoinstreamError, UsageError } from '../../core/errors.js';
import { silentLogger } from '../../core/logger.js';
import type { TrendResult, WindowResult } from '../../engine/contract.js';
import type { RangeQuery, StoredProgress, StoreReader } from '../contract.js';
import { DuckDBReader } from '../duckdb/duckdb-reader.js';
import { openDuckDB } from '../duckdb/open.js';
import { listLog } from './log.js';
import { dataFilePath, readDeltaLog } from './reader.js';
import { quoteIdent, quoteString } from './schema.js';
import { DeltaTableLog } from './table-log.js';
import { DELTA_TABLES, type DeltaColumn, type DeltaTableDef } from './tables.js';

/** The tables a reader reads, and the key whose newest row wins (none: every row counts). */
const READ_TABLES: { def: DeltaTableDef; key: string[] | null }[] = [
  { def: DELTA_TABLES.trade_windows, key: ['asset', 'window_start', 'window_end'] },
  { def: DELTA_TABLES.price_trends, key: ['asset', 'window_start', 'window_end'] },
  { def: DELTA_TABLES.rejected_trades, key: null },
];

/** The DuckDB store's type of a column (schema.ts): times are TIMESTAMP holding UTC. */
const DUCKDB_TYPE: Record<DeltaColumn['type'], string> = {
  string: 'VARCHAR', timestamp: 'TIMESTAMP', long: 'BIGINT', integer: 'INTEGER', double: 'DOUBLE', boolean: 'BOOLEAN', date: 'DATE',
};

/** The newest version in a table's log (commits or checkpoints), or -1 when there is no table. One listing. */
async function latestVersion(tableDir: string): Promise<number> {
  try {
    const { commits, checkpoints } = await listLog(join(tableDir, '_delta_log'));
    return Math.max(-1, ...commits, ...checkpoints.keys());
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return -1;
    throw new CoinstreamError('SINK_FAILED', `Delta table ${tableDir}: cannot list _delta_log (${(err as Error).message.split('\n')[0]})`, false, { cause: err });
  }
}

/** True when `tableDir` holds a Delta table with at least one commit (or checkpoint). */
async function hasTable(tableDir: string): Promise<boolean> {
  return (await latestVersion(tableDir)) >= 0;
}

export class DeltaReader implements StoreReader {
  /** Reloads under way: one at a time, and every caller waits for the one that is running. */
  private reloading: Promise<void> | null = null;

  private constructor(
    readonly name: string,
    private readonly dir: string,
    private inner: DuckDBReader,
    /** Each read table's log version as loaded (-1: not there). */
    private versions: number[],
  ) {}

  /**
   * Reads the tables of `dir` now. A table not there yet reads as empty; a directory with none of them
   * is a usage error. A table that is there but unreadable is a CONFIG error (readDeltaLog's).
   */
  static async open(dir: string): Promise<DeltaReader> {
    const root = resolve(dir);
    const present = await Promise.all(READ_TABLES.map((t) => hasTable(join(root, t.def.name))));
    if (!present.some(Boolean)) {
      // A table's own directory (DIR/trade_windows, or another application's table) is not a store.
      if (await hasTable(root)) throw new UsageError(`${dir} is a Delta table, not a coinstream store (a directory that holds trade_windows, price_trends and rejected_trades); point --store at that directory`);
      throw new UsageError(`no Delta tables of coinstream in ${dir}; run \`coinstream run --sink delta:${dir}\` first`);
    }
    const { inner, versions } = await loadAll(dir, root);
    return new DeltaReader(dir, root, inner, versions);
  }

  /**
   * The tables as their logs are now. Every read looks at the logs first (a directory listing each)
   * and loads the store again when any has moved on: `dashboard --store delta:DIR` asks every 2 s,
   * and before this it read the copy made at its start for ever. A whole reload, simple and right after an optimize
   * too, for the windows, trends and rejections a dashboard reads (never the trades).
   */
  private async current(): Promise<DuckDBReader> {
    while (this.reloading) await this.reloading;
    const now = await Promise.all(READ_TABLES.map((t) => latestVersion(join(this.dir, t.def.name))));
    if (now.every((v, i) => v === this.versions[i])) return this.inner;
    this.reloading ??= (async () => {
      try {
        const { inner, versions } = await loadAll(this.name, this.dir);
        const old = this.inner;
        this.inner = inner;
        this.versions = versions;
        await old.close();
      } finally {
        this.reloading = null;
      }
    })();
    await this.reloading;
    return this.inner;
  }

  async latestWindows(o: { asset?: string; lastMs: number }): Promise<{ window: WindowResult; trend?: TrendResult }[]> {
    return (await this.current()).latestWindows(o);
  }

  async assets(o: { lastMs: number }): Promise<string[]> {
    return (await this.current()).assets(o);
  }

  async windowsBetween(o: RangeQuery): Promise<WindowResult[]> {
    return (await this.current()).windowsBetween(o);
  }

  async trends(o: RangeQuery): Promise<TrendResult[]> {
    return (await this.current()).trends(o);
  }

  async rejectedCounts(): Promise<Record<string, number>> {
    return (await this.current()).rejectedCounts();
  }

  async jobSettings(): Promise<string | null> {
    const tableDir = join(this.dir, DELTA_TABLES.trade_windows.name);
    if (!(await hasTable(tableDir))) return null;
    const log = new DeltaTableLog(tableDir, silentLogger);
    const [job] = await log.jobs();
    return job === undefined ? null : ((await log.readProgress(job))?.settings ?? null);
  }

  /** As the Delta sink's readProgress reads it, from trade_windows' log as it is now. */
  async progress(job: string): Promise<StoredProgress | null> {
    const tableDir = join(this.dir, DELTA_TABLES.trade_windows.name);
    if (!(await hasTable(tableDir))) return null;
    return new DeltaTableLog(tableDir, silentLogger).readProgress(job);
  }

  async close(): Promise<void> {
    while (this.reloading) await this.reloading;
    await this.inner.close();
  }
}

/** Every read table of the store, loaded into a new in-memory DuckDB; each one's version as loaded. */
async function loadAll(name: string, root: string): Promise<{ inner: DuckDBReader; versions: number[] }> {
  const { instance, conn } = await openDuckDB(':memory:');
  try {
    const versions: number[] = [];
    for (const table of READ_TABLES) versions.push(await load(conn, join(root, table.def.name), table));
    return { inner: DuckDBReader.over(name, instance, conn), versions };
  } catch (err) {
    conn.closeSync();
    instance.closeSync();
    throw err;
  }
}

/**
 * Creates `table` in the in-memory database with the DuckDB store's columns and fills it from the
 * active files of the Delta table's latest snapshot (nothing when the table is not there yet).
 */
async function load(conn: DuckDBConnection, tableDir: string, table: (typeof READ_TABLES)[number]): Promise<number> {
  const { def, key } = table;
  const name = quoteIdent(def.name);
  await conn.run(`CREATE TABLE ${name} (${def.columns.map((c) => `${quoteIdent(c.name)} ${DUCKDB_TYPE[c.type]}`).join(', ')})`);
  if (!(await hasTable(tableDir))) return -1;
  const snapshot = await readDeltaLog(tableDir);
  // Another application's table of our name: said as the sink says it, not as a SQL binder error.
  const has = new Set(snapshot.metaData.schema.fields.map((f) => f.name.toLowerCase()));
  const lacking = def.columns.filter((c) => !has.has(c.name.toLowerCase())).map((c) => c.name);
  if (lacking.length > 0) {
    throw new UsageError(`Delta table ${tableDir} is not coinstream's: it has the columns (${snapshot.metaData.schema.fields.map((f) => f.name).join(', ')}), without ${lacking.join(', ')}; point --store at a directory coinstream wrote`);
  }
  if (snapshot.files.length === 0) return snapshot.version;
  for (const file of snapshot.files) {
    if (file.deletionVector) throw new CoinstreamError('CONFIG', `Delta table ${tableDir}: file ${file.path} has a deletion vector, which coinstream does not support`);
  }
  const paths = snapshot.files.map((f) => dataFilePath(snapshot, f));
  const list = `[${paths.map(quoteString).join(', ')}]`;
  try {
    // The columns the files hold (a column no file has reads as NULL); a partition column (`date`)
    // is not in the files and not among the store's columns.
    const inFiles = new Map<string, string>();
    for (const r of (await conn.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${list}, hive_partitioning=false, union_by_name=true)`)).getRowObjectsJS()) {
      inFiles.set(String(r.column_name).toLowerCase(), String(r.column_name));
    }
    const select = def.columns.map((c) => {
      const physical = inFiles.get(c.name.toLowerCase());
      if (physical === undefined) return `CAST(NULL AS ${DUCKDB_TYPE[c.type]}) AS ${quoteIdent(c.name)}`;
      // TIMESTAMPTZ -> TIMESTAMP through epoch microseconds: the UTC wall clock, whatever the session's time zone.
      const value = c.type === 'timestamp' ? `make_timestamp(epoch_us(__d.${quoteIdent(physical)}))` : `__d.${quoteIdent(physical)}`;
      return `${value} AS ${quoteIdent(c.name)}`;
    });
    const files = paths.map((p, i) => `(${i}, ${quoteString(p)})`).join(', ');
    const newest = key === null ? '' : ` QUALIFY row_number() OVER (PARTITION BY ${key.map((k) => `__d.${quoteIdent(inFiles.get(k) ?? k)}`).join(', ')} ORDER BY __f.__index DESC, __d.file_row_number DESC) = 1`;
    await conn.run(
      `INSERT INTO ${name} WITH __f(__index, __file) AS (VALUES ${files}) ` +
        `SELECT ${select.join(', ')} FROM read_parquet(${list}, hive_partitioning=false, union_by_name=true, filename='__delta_file', file_row_number=true) AS __d ` +
        `JOIN __f ON __d.__delta_file = __f.__file${newest}`,
    );
  } catch (err) {
    if (err instanceof CoinstreamError) throw err;
    // A failure, not bad usage (exit 1): files the log names are missing or damaged.
    throw new CoinstreamError('SINK_FAILED', `Delta table ${tableDir}: cannot read data files at version ${snapshot.version} (${(err as Error).message.split('\n')[0]})`, false, { cause: err });
  }
  return snapshot.version;
}
