// Parquet files for the Delta writer, written by an in-memory DuckDB: rows are appended to a staging
// table column by column (columns.ts), then `COPY ... (FORMAT parquet)` writes one file per partition
// and one aggregate query gives the file's statistics (numRecords, minValues, maxValues, nullCount).
//
// Timestamps go to Parquet as TIMESTAMPTZ: INT64 microseconds with isAdjustedToUTC=true, which is what
// the protocol asks of Delta's `timestamp` type.
import { Serial } from '../../core/serial.js';
import { randomUUID } from 'node:crypto';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { appendColumns } from '../duckdb/columns.js';
import { encodeDeltaPath, syncFile } from './files.js';
import { quoteIdent, quoteString } from './schema.js';
import type { DeltaColumn, DeltaTableDef, TableRows } from './tables.js';

/** An `add` action as written to the log (path URL-encoded, stats as JSON text). */
export interface AddAction {
  path: string;
  partitionValues: Record<string, string | null>;
  size: number;
  modificationTime: number;
  dataChange: boolean;
  stats: string;
}

const DUCK_TYPE: Record<DeltaColumn['type'], string> = { string: 'VARCHAR', timestamp: 'TIMESTAMP', long: 'BIGINT', integer: 'INTEGER', double: 'DOUBLE', boolean: 'BOOLEAN', date: 'DATE' };

/** Spark truncates string statistics to a prefix; we leave out a string column's bounds beyond this. */
const MAX_STAT_STRING = 32;

/** The checkpoint's columns (protocol, "Checkpoint Schema"), for DuckDB's read_json. */
const CHECKPOINT_COLUMNS: Record<string, string> = {
  txn: 'STRUCT(appId VARCHAR, version BIGINT, lastUpdated BIGINT)',
  add: 'STRUCT(path VARCHAR, partitionValues MAP(VARCHAR, VARCHAR), size BIGINT, modificationTime BIGINT, dataChange BOOLEAN, stats VARCHAR, tags MAP(VARCHAR, VARCHAR))',
  remove: 'STRUCT(path VARCHAR, deletionTimestamp BIGINT, dataChange BOOLEAN, extendedFileMetadata BOOLEAN, partitionValues MAP(VARCHAR, VARCHAR), size BIGINT)',
  metaData: 'STRUCT(id VARCHAR, name VARCHAR, description VARCHAR, format STRUCT(provider VARCHAR, options MAP(VARCHAR, VARCHAR)), schemaString VARCHAR, partitionColumns VARCHAR[], configuration MAP(VARCHAR, VARCHAR), createdTime BIGINT)',
  protocol: 'STRUCT(minReaderVersion INTEGER, minWriterVersion INTEGER)',
};

export class ParquetWriter {
  private readonly staged = new Set<string>();
  /**
   * One statement at a time on the connection: the tables of a store share this writer, and under
   * `process` two partitions' pipelines wrote two tables at once ("Attempting to execute an
   * unsuccessful or closed pending query result", exit 1, in 3 of 5 runs of a bug hunt).
   */
  private readonly serial = new Serial();

  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly conn: DuckDBConnection,
  ) {}

  static async open(): Promise<ParquetWriter> {
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const instance = await DuckDBInstance.create(':memory:');
    const conn = await instance.connect();
    // TIMESTAMP -> TIMESTAMPTZ must not shift by the machine's time zone.
    await conn.run("SET TimeZone = 'UTC'");
    return new ParquetWriter(instance, conn);
  }

  /**
   * Writes `rows` as Parquet under `tableDir` (one file per `date` when partitioned) and returns the
   * add actions for them. Files are flushed to disk before this returns; nothing is committed.
   */
  write(def: DeltaTableDef, rows: TableRows, tableDir: string, partitioned: boolean): Promise<AddAction[]> {
    return this.serial.run(() => this.writeNow(def, rows, tableDir, partitioned));
  }

  private async writeNow(def: DeltaTableDef, rows: TableRows, tableDir: string, partitioned: boolean): Promise<AddAction[]> {
    const stage = await this.stage(def, rows);
    const select = this.selectList(def);
    const from = def.name === 'trades' ? `stage_trades s JOIN stage_trade_keys k ON k.id = s.key_id` : `${stage} s`;
    const dateExpr = `CAST(CAST(s.${quoteIdent(def.dateOf)} AS TIMESTAMPTZ) AS DATE)`;
    const dates: (string | null)[] = partitioned
      ? (await this.rows(`SELECT DISTINCT CAST(${dateExpr} AS VARCHAR) AS d FROM ${from} ORDER BY d`)).map((r) => (r.d == null ? null : String(r.d)))
      : [null];
    const adds: AddAction[] = [];
    for (const date of dates) {
      const where = !partitioned ? '' : date === null ? `WHERE ${dateExpr} IS NULL` : `WHERE ${dateExpr} = DATE ${quoteString(date)}`;
      const dir = !partitioned ? '' : `date=${date ?? '__HIVE_DEFAULT_PARTITION__'}/`;
      const relative = `${dir}part-00000-${randomUUID()}-c000.snappy.parquet`;
      const file = join(tableDir, relative);
      await mkdir(dirname(file), { recursive: true });
      const query = `SELECT ${select} FROM ${from} ${where}`;
      await this.conn.run(`COPY (${query}) TO ${quoteString(file)} (FORMAT parquet, COMPRESSION snappy)`);
      await syncFile(file);
      const { size, mtimeMs } = await stat(file);
      adds.push({
        path: encodeDeltaPath(relative),
        partitionValues: partitioned ? { date } : {},
        size,
        modificationTime: Math.floor(mtimeMs),
        dataChange: true,
        stats: JSON.stringify(await this.statsOf(def, query)),
      });
    }
    return adds;
  }

  /**
   * Rewrites data files (already in the table) as one file: `optimize`. Returns the add action of the
   * new file, its stats computed from what it holds.
   */
  compact(def: DeltaTableDef, sources: string[], tableDir: string, partitionDir: string, partitionValues: Record<string, string | null>): Promise<AddAction> {
    return this.serial.run(() => this.compactNow(def, sources, tableDir, partitionDir, partitionValues));
  }

  private async compactNow(def: DeltaTableDef, sources: string[], tableDir: string, partitionDir: string, partitionValues: Record<string, string | null>): Promise<AddAction> {
    const list = `[${sources.map(quoteString).join(', ')}]`;
    const relative = `${partitionDir}part-00000-${randomUUID()}-c000.snappy.parquet`;
    const file = join(tableDir, relative);
    await mkdir(dirname(file), { recursive: true });
    const query = `SELECT ${def.columns.map((c) => quoteIdent(c.name)).join(', ')} FROM read_parquet(${list}, hive_partitioning = false, union_by_name = true)`;
    await this.conn.run(`COPY (${query}) TO ${quoteString(file)} (FORMAT parquet, COMPRESSION snappy)`);
    await syncFile(file);
    const { size, mtimeMs } = await stat(file);
    return { path: encodeDeltaPath(relative), partitionValues, size, modificationTime: Math.floor(mtimeMs), dataChange: false, stats: JSON.stringify(await this.statsOf(def, query)) };
  }

  /** Writes a classic (V1) checkpoint: `actions` in the checkpoint schema, to `path` atomically. */
  writeCheckpoint(actions: object[], path: string): Promise<void> {
    return this.serial.run(() => this.writeCheckpointNow(actions, path));
  }

  private async writeCheckpointNow(actions: object[], path: string): Promise<void> {
    const tmpDir = join(dirname(path), '.tmp');
    await mkdir(tmpDir, { recursive: true });
    const id = randomUUID();
    const json = join(tmpDir, `${id}.checkpoint.json`);
    const parquet = join(tmpDir, `${id}.checkpoint.parquet`);
    try {
      await writeFile(json, actions.map((a) => JSON.stringify(a)).join('\n') + '\n');
      const columns = `{${Object.entries(CHECKPOINT_COLUMNS).map(([k, v]) => `${quoteString(k)}: ${quoteString(v)}`).join(', ')}}`;
      await this.conn.run(`COPY (SELECT * FROM read_json(${quoteString(json)}, format = 'newline_delimited', columns = ${columns})) TO ${quoteString(parquet)} (FORMAT parquet)`);
      await syncFile(parquet);
      // A reader sees the checkpoint whole or not at all.
      await rename(parquet, path);
    } finally {
      await rm(json, { force: true });
      await rm(parquet, { force: true });
    }
  }

  close(): void {
    this.conn.closeSync();
    this.instance.closeSync();
  }

  /** Loads the rows into the table's staging table (emptied first); its name. */
  private async stage(def: DeltaTableDef, rows: TableRows): Promise<string> {
    const name = `stage_${def.name}`;
    if (!this.staged.has(name)) {
      const columns =
        def.name === 'trades'
          ? 'key_id UINTEGER, price DOUBLE, volume DOUBLE, "timestamp" TIMESTAMP, price_usd DOUBLE, trade_id VARCHAR, received_at TIMESTAMP'
          : def.columns.map((c) => `${quoteIdent(c.name)} ${DUCK_TYPE[c.type]}`).join(', ');
      await this.conn.run(`CREATE TEMP TABLE ${name} (${columns})`);
      if (def.name === 'trades') await this.conn.run('CREATE TEMP TABLE stage_trade_keys (id UINTEGER, exchange VARCHAR, base VARCHAR, quote VARCHAR, direction VARCHAR)');
      this.staged.add(name);
    }
    await this.conn.run(`DELETE FROM ${name}`);
    if (def.name === 'trades') {
      await this.conn.run('DELETE FROM stage_trade_keys');
      const keys = rows.keys ?? [];
      if (keys.length > 0) {
        const values = keys.map((k, i) => `(${i}, ${quoteString(k.exchange)}, ${quoteString(k.base)}, ${quoteString(k.quote)}, ${quoteString(k.direction)})`);
        await this.conn.run(`INSERT INTO stage_trade_keys VALUES ${values.join(', ')}`);
      }
    }
    await appendColumns(this.conn, name, rows.columns, rows.length);
    return name;
  }

  /** The table's columns from the staging table, timestamps as TIMESTAMPTZ. */
  private selectList(def: DeltaTableDef): string {
    return def.columns
      .map((c) => {
        const source = def.name === 'trades' && ['exchange', 'base', 'quote', 'direction'].includes(c.name) ? `k.${quoteIdent(c.name)}` : `s.${quoteIdent(c.name)}`;
        return c.type === 'timestamp' ? `CAST(${source} AS TIMESTAMPTZ) AS ${quoteIdent(c.name)}` : `${source} AS ${quoteIdent(c.name)}`;
      })
      .join(', ');
  }

  /** Per-file statistics (protocol, "Per-file Statistics") of what `query` selects. */
  private async statsOf(def: DeltaTableDef, query: string): Promise<object> {
    const parts = ['count(*) AS n'];
    def.columns.forEach((c, i) => {
      const col = quoteIdent(c.name);
      parts.push(`count(*) - count(${col}) AS nulls_${i}`);
      if (c.type !== 'boolean') parts.push(`min(${col}) AS min_${i}`, `max(${col}) AS max_${i}`);
    });
    const [row] = await this.rows(`SELECT ${parts.join(', ')} FROM (${query})`);
    const minValues: Record<string, unknown> = {};
    const maxValues: Record<string, unknown> = {};
    const nullCount: Record<string, number> = {};
    def.columns.forEach((c, i) => {
      nullCount[c.name] = Number(row[`nulls_${i}`]);
      if (c.type === 'boolean') return;
      const min = statValue(row[`min_${i}`]);
      const max = statValue(row[`max_${i}`]);
      if (min === undefined || max === undefined) return;
      if (typeof min === 'string' && (min.length > MAX_STAT_STRING || (max as string).length > MAX_STAT_STRING)) return;
      minValues[c.name] = min;
      maxValues[c.name] = max;
    });
    return { numRecords: Number(row.n), minValues, maxValues, nullCount };
  }

  private async rows(sql: string): Promise<Record<string, unknown>[]> {
    return (await this.conn.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
  }
}

/** A min/max as Spark writes it in JSON stats: timestamps as ISO-8601 UTC with milliseconds. */
function statValue(v: unknown): string | number | undefined {
  if (v === null || v === undefined) return undefined;
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  return String(v);
}
