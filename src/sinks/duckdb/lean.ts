// The store's DuckDB connection on the bindings alone.
//
// @duckdb/node-api is ~180 CommonJS files on top of the native bindings; loading them took ~100-150 ms
// of the DuckDB worker's start (2-vCPU VM), on the path of every run into DuckDB. Writing needs none of
// its value conversion: statements run without reading their results, rows go in through an appender
// fed with data chunks (columns.ts). Only reading results (a store that already holds a job) loads
// node-api, when it is first needed, over this same connection.
import type { DuckDBConnection, DuckDBResultReader } from '@duckdb/node-api';
import type { Appender, Connection, Database, DataChunk } from '@duckdb/node-bindings';
import { duckdbBindings as duckdb, nodeApi } from './duckdb-api.js';

/** An appender over a data chunk's rows: the subset of node-api's DuckDBAppender that columns.ts uses. */
export interface ChunkAppender {
  appendDataChunk(chunk: { chunk: DataChunk }): void;
  flushSync(): void;
  closeSync(): void;
}

/** What appendColumns writes through: a LeanConnection, or node-api's DuckDBConnection (tests, scripts). */
export interface AppendingConnection {
  createAppender(table: string): Promise<ChunkAppender>;
}

export class LeanConnection implements AppendingConnection {
  private reader: DuckDBConnection | null = null;

  constructor(private readonly connection: Connection) {}

  /** Runs one or more statements; their results are not read. */
  async run(sql: string): Promise<void> {
    await duckdb.query(this.connection, sql);
  }

  /** Runs a statement and reads its whole result (loads node-api the first time). */
  runAndReadAll(sql: string, values?: Record<string, string>): Promise<DuckDBResultReader> {
    this.reader ??= new (nodeApi().DuckDBConnection)(this.connection);
    return this.reader.runAndReadAll(sql, values);
  }

  async createAppender(table: string): Promise<ChunkAppender> {
    const appender: Appender = duckdb.appender_create_ext(this.connection, null, null, table);
    return {
      appendDataChunk: (chunk) => duckdb.append_data_chunk(appender, chunk.chunk),
      flushSync: () => duckdb.appender_flush_sync(appender),
      closeSync: () => duckdb.appender_close_sync(appender),
    };
  }

  closeSync(): void {
    duckdb.disconnect_sync(this.connection);
  }
}

/** A database and its connection, opened with the bindings alone. */
export class LeanDuckDB {
  private constructor(private readonly db: Database, readonly conn: LeanConnection) {}

  static async open(path: string, config: Record<string, string>): Promise<LeanDuckDB> {
    const options = duckdb.create_config();
    duckdb.set_config(options, 'duckdb_api', 'node-neo-api'); // as node-api says it
    for (const [name, value] of Object.entries(config)) duckdb.set_config(options, name, value);
    const db = await duckdb.open(path, options);
    return new LeanDuckDB(db, new LeanConnection(await duckdb.connect(db)));
  }

  closeSync(): void {
    this.conn.closeSync();
    duckdb.close_sync(this.db);
  }
}
