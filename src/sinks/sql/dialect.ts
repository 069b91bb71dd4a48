// What differs between the SQL databases the SQL store writes to: how to connect (the driver, loaded
// lazily), the DDL, literals, the upsert clause, and which errors a reconnect and retry can fix.
// Everything else (batches, transactions, progress, outages) is the one SqlStore in sql-store.ts.
//
// Rows go in as multi-row INSERTs whose values are SQL literals built here (no bound parameters):
// PostgreSQL caps a statement at 65,535 parameters, and building the text once is cheaper than having
// the driver format or bind ten values per trade. Every literal goes through the dialect's quoting.
import type { Logger } from '../../core/logger.js';
import type { SqlTarget } from './target.js';

export type SqlRow = Record<string, unknown>;

/** One connection, held by the store between batches and replaced once it is lost. */
export interface SqlSession {
  /** Runs SQL text (one statement, or several where the driver allows) and returns the rows of a SELECT. */
  query(sql: string): Promise<SqlRow[]>;
  /** Set when the connection died while idle (killed, the server went away): the next use fails. */
  readonly lost: Error | null;
  /** Gives the connection back to the pool, or throws it away when `broken`. */
  release(broken: boolean): void;
}

export interface SqlDriver {
  connect(): Promise<SqlSession>;
  end(): Promise<void>;
}

export interface SqlDialect {
  readonly scheme: 'mysql' | 'postgres';
  /** Loads the driver module (only now: `--help` loads no driver) and makes a pool. */
  openDriver(target: SqlTarget, logger: Logger): Promise<SqlDriver>;
  /** CREATE TABLE IF NOT EXISTS ..., one statement each. */
  readonly schema: readonly string[];
  /** A SQL expression: the schema (MySQL: the database) that unqualified table names are in. */
  readonly currentSchema: string;
  /** The longest statement to send, in characters (MySQL: well under max_allowed_packet). */
  maxStatementChars(session: SqlSession): Promise<number>;
  readonly begin: string;
  /** A quoted identifier. */
  id(name: string): string;
  /** A string literal. */
  str(text: string): string;
  /** A DOUBLE literal; finite numbers only (see watermark for the one column that holds infinities). */
  num(x: number): string;
  /** A timestamp literal (UTC, milliseconds) from epoch milliseconds. */
  time(ms: number): string;
  bool(b: boolean): string;
  /** The clause after VALUES that turns the INSERT into an upsert on `key`, updating `columns`. */
  upsert(key: readonly string[], columns: readonly string[]): string;
  /** A SQL expression: a timestamp column as epoch milliseconds (a number). */
  epochMs(column: string): string;
  /** SELECT ... FOR UPDATE: the job's stored batch id, waiting for a commit in flight. */
  readonly forUpdate: string;
  /**
   * Whether reconnecting and running the batch again can get past the error: a lost or refused
   * connection, a server shutting down or starting, a deadlock. Anything else (syntax, a constraint,
   * bad credentials) fails the same way every time.
   */
  isRetriable(err: unknown): boolean;
  /** The server's or driver's text for an error, with its code. */
  describe(err: unknown): string;
}

/** The watermark is ±Infinity before the first trade and after a bounded source ended. */
export const WATERMARK_SENTINEL = Number.MAX_VALUE;

/**
 * stream_progress.watermark is a DOUBLE, and MySQL's DOUBLE has no infinities: ±Infinity is stored as
 * ±1.7976931348623157e308 (Number.MAX_VALUE) in every SQL store, read back as ±Infinity. A real
 * watermark is epoch milliseconds (about 1.7e12), never near it.
 */
export function watermarkToStore(w: number): number {
  if (w === Infinity) return WATERMARK_SENTINEL;
  if (w === -Infinity) return -WATERMARK_SENTINEL;
  return w;
}

export function watermarkFromStore(w: number): number {
  if (w >= WATERMARK_SENTINEL) return Infinity;
  if (w <= -WATERMARK_SENTINEL) return -Infinity;
  return w;
}

/** Error properties drivers set (Node's system errors, mysql2's and pg's). */
export interface DriverError {
  code?: string | number;
  errno?: number;
  fatal?: boolean;
  message?: string;
  sqlMessage?: string;
  severity?: string;
  detail?: string;
}

/** Node's socket errors: the server is not there (yet), or went away. */
export const SOCKET_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EAI_AGAIN', 'ECONNABORTED', 'ENOTCONN']);

/** Our tables that are there, with their column names (lower case), as information_schema gives them for the connection's database or schema. */
export async function tablesThere(dialect: Pick<SqlDialect, 'schema' | 'str' | 'currentSchema'>, query: (sql: string) => Promise<SqlRow[]>): Promise<Map<string, string[]>> {
  const names = [...schemaColumns(dialect.schema).keys()].map((t) => dialect.str(t)).join(', ');
  const rows = await query(
    `SELECT table_name AS t, column_name AS c FROM information_schema.columns WHERE table_schema = ${dialect.currentSchema} AND table_name IN (${names}) ORDER BY table_name, ordinal_position`,
  );
  const found = new Map<string, string[]>();
  for (const r of rows) {
    const table = String(r.t).toLowerCase();
    found.set(table, [...(found.get(table) ?? []), String(r.c).toLowerCase()]);
  }
  return found;
}

/**
 * A table of ours that is there with other columns belongs to something else (another application's
 * trade_windows, say): says which and what it holds ("its table trade_windows has the columns (id,
 * foo), not coinstream's"), or null when every table of ours that is there has our columns. Columns
 * are compared by name.
 */
export function foreignTable(dialect: Pick<SqlDialect, 'schema'>, there: Map<string, string[]>): string | null {
  const ours = schemaColumns(dialect.schema);
  for (const [table, columns] of there) {
    const expected = ours.get(table) ?? [];
    if (columns.length !== expected.length || !expected.every((c) => columns.includes(c))) return `its table ${table} has the columns (${columns.join(', ')}), not coinstream's`;
  }
  return null;
}

/** A CREATE TABLE statement of a dialect's schema: the table's name, and the text of its columns. */
const CREATE_TABLE = /CREATE TABLE IF NOT EXISTS (\w+) \(([\s\S]*)\)/;

/** The table a CREATE TABLE statement of a dialect's schema makes. */
export function tableOf(ddl: string): string | undefined {
  return CREATE_TABLE.exec(ddl)?.[1];
}

/**
 * Each table's column names, from the CREATE TABLE statements of a dialect's schema (the one place
 * they are written): a column line starts with its name; key and constraint lines are not columns.
 */
export function schemaColumns(schema: readonly string[]): Map<string, string[]> {
  const tables = new Map<string, string[]>();
  for (const ddl of schema) {
    const m = CREATE_TABLE.exec(ddl);
    if (!m) continue;
    const lines = m[2].split('\n').map((l) => l.trim());
    const columns = lines.filter((l) => l !== '' && !/^(PRIMARY KEY|UNIQUE|CONSTRAINT|KEY|INDEX|\))/i.test(l)).map((l) => l.split(/\s+/)[0].replace(/[`"]/g, ''));
    tables.set(m[1], columns);
  }
  return tables;
}
