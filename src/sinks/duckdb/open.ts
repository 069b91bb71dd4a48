import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { CoinstreamError } from '../../core/errors.js';

/** Opens (creating if needed) a DuckDB file, turning DuckDB's lock error into one that says what to do. */
export async function openDuckDB(path: string, options: { readOnly?: boolean; threads?: number } = {}): Promise<{ instance: DuckDBInstance; conn: DuckDBConnection }> {
  let instance: DuckDBInstance;
  try {
    const config: Record<string, string> = {};
    if (options.readOnly) config.access_mode = 'READ_ONLY';
    if (options.threads !== undefined) config.threads = String(options.threads);
    instance = await DuckDBInstance.create(path, config);
  } catch (err) {
    const message = (err as Error).message;
    if (/lock/i.test(message)) {
      throw new CoinstreamError('STORE_LOCKED', `${path} is in use by another process (a running coinstream?). Stop it, or query a copy of the file. DuckDB said: ${message.split('\n')[0]}`, true, { cause: err });
    }
    throw new CoinstreamError('SINK_FAILED', `cannot open DuckDB store ${path}: ${message}`, false, { cause: err });
  }
  return { instance, conn: await instance.connect() };
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
