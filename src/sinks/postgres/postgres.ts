// PostgreSQL for the SQL store (pg, pooled). Times are TIMESTAMPTZ(3), doubles DOUBLE PRECISION,
// counts BIGINT, texts TEXT; upserts are `INSERT ... ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c`.
// Statements are sent as text (the simple query protocol: no 65,535-parameter cap), at most 4 MiB.
// String literals are standard-conforming ('' doubles a quote; the session sets
// standard_conforming_strings on). PostgreSQL text cannot hold NUL: a NUL character in a rejected
// line's raw text or detail is stored as U+FFFD.
//
// Options in the URL's query string pass through to pg's connection string parser, e.g.
//   ?sslmode=require | verify-ca | verify-full | disable   (with sslrootcert=, sslcert=, sslkey= paths)
//   ?ssl=true   ?application_name=coinstream   ?connect_timeout=10 (s)   ?options=-c%20search_path%3Dmyschema
import type { Pool, PoolClient, PoolConfig } from 'pg';
import { UsageError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { SOCKET_ERRORS, type DriverError, type SqlDialect, type SqlDriver, type SqlRow, type SqlSession } from '../sql/dialect.js';
import type { SqlReadAccess, SqlReadConnection } from '../sql/sql-reader.js';
import { SqlStore } from '../sql/sql-store.js';
import { parseSqlTarget, type SqlTarget } from '../sql/target.js';

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS trade_windows (
  asset          TEXT             NOT NULL,
  window_start   TIMESTAMPTZ(3)   NOT NULL,
  window_end     TIMESTAMPTZ(3)   NOT NULL,
  trades         BIGINT           NOT NULL,
  total_volume   DOUBLE PRECISION NOT NULL,
  total_amount   DOUBLE PRECISION NOT NULL,
  average_price  DOUBLE PRECISION NOT NULL,
  vwap           DOUBLE PRECISION NOT NULL,
  "open"         DOUBLE PRECISION NOT NULL,
  high           DOUBLE PRECISION NOT NULL,
  low            DOUBLE PRECISION NOT NULL,
  "close"        DOUBLE PRECISION NOT NULL,
  buy_volume     DOUBLE PRECISION NOT NULL,
  sell_volume    DOUBLE PRECISION NOT NULL,
  is_final       BOOLEAN          NOT NULL,
  updated_at     TIMESTAMPTZ(3)   NOT NULL,
  PRIMARY KEY (asset, window_start, window_end)
)`,
  `CREATE TABLE IF NOT EXISTS price_trends (
  asset          TEXT             NOT NULL,
  window_start   TIMESTAMPTZ(3)   NOT NULL,
  window_end     TIMESTAMPTZ(3)   NOT NULL,
  vwap           DOUBLE PRECISION NOT NULL,
  prev_vwap      DOUBLE PRECISION,
  trend          TEXT,
  avg_price_6m   DOUBLE PRECISION NOT NULL,
  change_6m_pct  DOUBLE PRECISION NOT NULL,
  windows_6m     INTEGER          NOT NULL,
  is_final       BOOLEAN          NOT NULL,
  PRIMARY KEY (asset, window_start, window_end)
)`,
  `CREATE TABLE IF NOT EXISTS rejected_trades (
  received_at    TIMESTAMPTZ(3)   NOT NULL,
  "source"       TEXT             NOT NULL,
  reason         TEXT             NOT NULL,
  detail         TEXT             NOT NULL,
  raw            TEXT             NOT NULL
)`,
  `CREATE TABLE IF NOT EXISTS trades (
  exchange       TEXT             NOT NULL,
  base           TEXT             NOT NULL,
  quote          TEXT             NOT NULL,
  direction      TEXT             NOT NULL,
  price          DOUBLE PRECISION NOT NULL,
  volume         DOUBLE PRECISION NOT NULL,
  "timestamp"    TIMESTAMPTZ(3)   NOT NULL,
  price_usd      DOUBLE PRECISION NOT NULL,
  trade_id       TEXT,
  received_at    TIMESTAMPTZ(3)
)`,
  // watermark: ±Infinity is stored as ±1.7976931348623157e308, as in MySQL (see watermarkToStore).
  `CREATE TABLE IF NOT EXISTS stream_progress (
  job            TEXT             NOT NULL,
  "source"       TEXT             NOT NULL,
  "position"     TEXT,
  watermark      DOUBLE PRECISION NOT NULL,
  batch_id       BIGINT           NOT NULL,
  settings       TEXT             NOT NULL,
  engine_state   TEXT,
  finished       BOOLEAN          NOT NULL,
  updated_at     TIMESTAMPTZ(3)   NOT NULL,
  PRIMARY KEY (job, "source")
)`,
];

/**
 * SQLSTATEs a reconnect and retry can get past: class 08 (connection exception), 57P01-57P03
 * (terminated by an administrator, crash shutdown, cannot connect now), 53300 (too many connections),
 * 40001/40P01 (serialization failure, deadlock).
 */
const RETRIABLE_STATES = /^(08...|57P0[123]|53300|40001|40P01)$/;
const LOST = /Connection terminated|terminating connection|connection timeout|Client has encountered a connection error|not queryable|Client was closed|the database system is (starting up|shutting down|in recovery mode)/i;

const SYNTAX: Omit<SqlDialect, 'openDriver'> = {
  scheme: 'postgres',
  schema: SCHEMA,
  currentSchema: 'current_schema()',
  begin: 'BEGIN',
  forUpdate: `SELECT batch_id FROM stream_progress WHERE job = $JOB AND "source" = '*' FOR UPDATE`,
  async maxStatementChars(): Promise<number> {
    return 4 << 20;
  },
  id: (name) => `"${name}"`,
  str: (text) => `'${text.replace(/'/g, "''").replace(/\0/g, '\uFFFD')}'`,
  // Quoted: an untyped literal goes straight to the column's float8 input ('Infinity' and 'NaN'
  // included); a bare 10749.4 would be parsed as NUMERIC first and then converted (measured, much
  // slower: 1M trades took 26-29 s that way, 19-20 s so).
  num: (x) => `'${x}'`,
  time: (ms) => `'${new Date(ms).toISOString()}'`,
  bool: (b) => (b ? 'TRUE' : 'FALSE'),
  upsert: (key, columns) => ` ON CONFLICT (${key.map((c) => `"${c}"`).join(', ')}) DO UPDATE SET ${columns.filter((c) => !key.includes(c)).map((c) => `"${c}" = EXCLUDED."${c}"`).join(', ')}`,
  epochMs: (column) => `(extract(epoch from ${column}) * 1000)::float8`,
  isRetriable(err) {
    const e = err as DriverError;
    const code = String(e?.code ?? '');
    return SOCKET_ERRORS.has(code) || RETRIABLE_STATES.test(code) || LOST.test(e?.message ?? '');
  },
  describe(err) {
    const e = err as DriverError;
    const text = e?.message || String(err);
    return e?.code ? `${text} (${e.code})` : text;
  },
};

export function postgresDialect(config: PoolConfig): SqlDialect {
  return {
    ...SYNTAX,
    async openDriver(_target: SqlTarget, logger: Logger): Promise<SqlDriver> {
      const pg = (await import('pg')).default;
      const pool = new pg.Pool(config);
      // An idle pooled client whose server connection dies emits 'error' on the pool: without a
      // listener that would end the process.
      pool.on('error', (err) => logger.debug({ err: err.message }, 'postgres: an idle pooled connection was lost'));
      return new PostgresDriver(pool, logger);
    },
  };
}

class PostgresDriver implements SqlDriver {
  constructor(
    private readonly pool: Pool,
    private readonly logger: Logger,
  ) {}

  async connect(): Promise<SqlSession> {
    const client = await this.pool.connect();
    const session = new PostgresSession(client, this.logger);
    try {
      await client.query("SET standard_conforming_strings = on; SET TIME ZONE 'UTC'");
    } catch (err) {
      session.release(true);
      throw err;
    }
    return session;
  }

  end(): Promise<void> {
    return this.pool.end();
  }
}

class PostgresSession implements SqlSession {
  lost: Error | null = null;
  private readonly onError = (err: Error) => {
    this.lost ??= err;
    this.logger.debug({ err: err.message }, 'postgres connection lost while idle');
  };

  constructor(
    private readonly client: PoolClient,
    private readonly logger: Logger,
  ) {
    // A checked-out client whose connection dies between queries emits 'error': remembered, and the
    // next use fails and reconnects.
    client.on('error', this.onError);
  }

  async query(sql: string): Promise<SqlRow[]> {
    const result = await this.client.query(sql);
    // Several statements in one text give an array of results: the last one's rows.
    const last = Array.isArray(result) ? result[result.length - 1] : result;
    return (last?.rows ?? []) as SqlRow[];
  }

  release(broken: boolean): void {
    this.client.off('error', this.onError);
    this.client.release(broken || this.lost ? (this.lost ?? true) : undefined);
  }
}

/**
 * What pg's connection string parser takes from the query string (pg-connection-string), plus the
 * client settings it passes on. Anything else pg ignores without a word: `?sslmod=require` connected
 * without TLS. So it is refused, as the MySQL store refuses an unknown option.
 */
const PG_URL_OPTIONS = [
  'sslmode', 'ssl', 'sslcert', 'sslkey', 'sslrootcert', 'sslpassword', 'application_name', 'fallback_application_name', 'options', 'client_encoding',
  'connect_timeout', 'keepalives', 'keepalives_idle', 'statement_timeout', 'query_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'uselibpqcompat', 'sslnegotiation',
];
const PG_SSLMODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'];

/** pg pool options: the URL (query string included) without the password, which goes apart. */
function poolConfig(spec: string, target: SqlTarget): PoolConfig {
  for (const [key, value] of target.params) {
    if (!PG_URL_OPTIONS.includes(key)) throw new UsageError(`--sink postgres: unknown option "${key}" in the URL; known: ${PG_URL_OPTIONS.join(', ')}`);
    if (key === 'sslmode' && !PG_SSLMODES.includes(value)) throw new UsageError(`--sink postgres: sslmode "${value}" is not one of ${PG_SSLMODES.join(', ')}`);
  }
  const url = new URL(spec);
  url.password = '';
  return { connectionString: url.toString(), password: target.password || undefined, max: 2, idleTimeoutMillis: 30_000 };
}

/** `--sink postgres://USER[:PASS]@HOST:PORT/DB`: a SqlStore on PostgreSQL. No driver is loaded until open(). */
export function createPostgresStore(spec: string, logger: Logger, env: NodeJS.ProcessEnv = process.env): SqlStore {
  const target = parseSqlTarget(spec, env);
  return new SqlStore(target, postgresDialect(poolConfig(spec, target)), logger);
}

/**
 * `query --store postgres://...`: what the store reader (sql/sql-reader.ts) needs: the dialect and one
 * client with bound parameters ($1, $2, ...). No driver is loaded until connect().
 */
export function postgresReadAccess(spec: string, env: NodeJS.ProcessEnv = process.env): SqlReadAccess {
  const target = parseSqlTarget(spec, env);
  const { max: _poolOnly, idleTimeoutMillis: _alsoPoolOnly, ...config } = poolConfig(spec, target);
  return {
    target,
    dialect: postgresDialect(config),
    async connect(): Promise<SqlReadConnection> {
      const pg = (await import('pg')).default;
      const client = new pg.Client({ connectionTimeoutMillis: 10_000, ...config });
      // A connection lost while idle emits 'error': without a listener that would end the process.
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.query("SET TIME ZONE 'UTC'");
      } catch (err) {
        void client.end().catch(() => undefined); // not awaited: ending a client that never connected may not settle
        throw err;
      }
      return {
        query: async (sql, params) => (await client.query(sql, params as unknown[])).rows as SqlRow[],
        end: () => client.end(),
      };
    },
  };
}
