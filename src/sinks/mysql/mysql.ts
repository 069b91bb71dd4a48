// MySQL / MariaDB for the SQL store (mysql2, pooled). Only syntax both servers know: tested on
// MariaDB 10.11, written for MySQL 8 too (`ON DUPLICATE KEY UPDATE c = VALUES(c)`, which MySQL 8
// still accepts; the `AS new` row alias would be MySQL-only).
//
// Types: times are DATETIME(3) holding UTC (the session's time_zone is set to +00:00, and every time
// is written as a UTC literal), doubles DOUBLE, counts BIGINT, texts utf8mb4 with a binary collation
// (keys compare exactly, 'Bitcoin' is not 'bitcoin'). Keyed strings (asset, job, source) are VARCHARs
// (asset up to 255 characters); engine_state is LONGTEXT. Statements stay under a quarter of the
// server's max_allowed_packet (read at open), at most 4 MiB.
//
// Options in the URL's query string:
//   ?ssl=true                       TLS with the system's CAs, certificate verified
//   ?ssl={"rejectUnauthorized":false,"ca":"-----BEGIN CERTIFICATE-----..."}   mysql2's ssl object, as JSON
//   ?ssl=Amazon%20RDS               one of mysql2's named SSL profiles
//   ?connectTimeout=10000           ms
import type { Pool, PoolConnection, PoolOptions } from 'mysql2/promise';
import { UsageError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { SOCKET_ERRORS, type DriverError, type SqlDialect, type SqlDriver, type SqlRow, type SqlSession } from '../sql/dialect.js';
import type { SqlReadAccess, SqlReadConnection } from '../sql/sql-reader.js';
import { SqlStore } from '../sql/sql-store.js';
import { parseSqlTarget, type SqlTarget } from '../sql/target.js';

const TABLE_OPTIONS = 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin';

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS trade_windows (
  asset          VARCHAR(255) NOT NULL,
  window_start   DATETIME(3)  NOT NULL,
  window_end     DATETIME(3)  NOT NULL,
  trades         BIGINT       NOT NULL,
  total_volume   DOUBLE       NOT NULL,
  total_amount   DOUBLE       NOT NULL,
  average_price  DOUBLE       NOT NULL,
  vwap           DOUBLE       NOT NULL,
  \`open\`         DOUBLE       NOT NULL,
  high           DOUBLE       NOT NULL,
  low            DOUBLE       NOT NULL,
  \`close\`        DOUBLE       NOT NULL,
  buy_volume     DOUBLE       NOT NULL,
  sell_volume    DOUBLE       NOT NULL,
  is_final       BOOLEAN      NOT NULL,
  updated_at     DATETIME(3)  NOT NULL,
  PRIMARY KEY (asset, window_start, window_end)
) ${TABLE_OPTIONS}`,
  `CREATE TABLE IF NOT EXISTS price_trends (
  asset          VARCHAR(255) NOT NULL,
  window_start   DATETIME(3)  NOT NULL,
  window_end     DATETIME(3)  NOT NULL,
  vwap           DOUBLE       NOT NULL,
  prev_vwap      DOUBLE,
  trend          VARCHAR(8),
  avg_price_6m   DOUBLE       NOT NULL,
  change_6m_pct  DOUBLE       NOT NULL,
  windows_6m     INT          NOT NULL,
  is_final       BOOLEAN      NOT NULL,
  PRIMARY KEY (asset, window_start, window_end)
) ${TABLE_OPTIONS}`,
  `CREATE TABLE IF NOT EXISTS rejected_trades (
  received_at    DATETIME(3)  NOT NULL,
  \`source\`       TEXT         NOT NULL,
  reason         VARCHAR(16)  NOT NULL,
  detail         MEDIUMTEXT   NOT NULL,
  raw            MEDIUMTEXT   NOT NULL
) ${TABLE_OPTIONS}`,
  `CREATE TABLE IF NOT EXISTS trades (
  exchange       VARCHAR(255) NOT NULL,
  base           VARCHAR(255) NOT NULL,
  quote          VARCHAR(255) NOT NULL,
  direction      VARCHAR(4)   NOT NULL,
  price          DOUBLE       NOT NULL,
  volume         DOUBLE       NOT NULL,
  \`timestamp\`    DATETIME(3)  NOT NULL,
  price_usd      DOUBLE       NOT NULL,
  trade_id       TEXT,
  received_at    DATETIME(3)
) ${TABLE_OPTIONS}`,
  // watermark: ±Infinity is stored as ±1.7976931348623157e308 (see watermarkToStore).
  `CREATE TABLE IF NOT EXISTS stream_progress (
  job            VARCHAR(191) NOT NULL,
  \`source\`       VARCHAR(512) NOT NULL,
  \`position\`     TEXT,
  watermark      DOUBLE       NOT NULL,
  batch_id       BIGINT       NOT NULL,
  settings       TEXT         NOT NULL,
  engine_state   LONGTEXT,
  finished       BOOLEAN      NOT NULL,
  updated_at     DATETIME(3)  NOT NULL,
  PRIMARY KEY (job, \`source\`)
) ${TABLE_OPTIONS}`,
];

/** Errors a reconnect and a retry of the batch can get past (by mysql2's code). */
const RETRIABLE_CODES = new Set([
  'PROTOCOL_CONNECTION_LOST', 'PROTOCOL_SEQUENCE_TIMEOUT', 'ER_SERVER_SHUTDOWN', 'ER_CONNECTION_KILLED', 'ER_QUERY_INTERRUPTED',
  'ER_CON_COUNT_ERROR', 'ER_TOO_MANY_USER_CONNECTIONS', 'ER_LOCK_DEADLOCK', 'ER_LOCK_WAIT_TIMEOUT', 'ER_CLIENT_INTERACTION_TIMEOUT',
  'ER_NET_READ_ERROR', 'ER_NET_READ_INTERRUPTED', 'ER_NET_ERROR_ON_WRITE', 'ER_NET_WRITE_INTERRUPTED', 'ER_SERVER_GONE_ERROR', 'CR_SERVER_LOST',
]);
/** Fatal (connection-ending) errors that come back the same on every try. */
const PERMANENT_CODES = new Set(['ER_ACCESS_DENIED_ERROR', 'ER_DBACCESS_DENIED_ERROR', 'ER_BAD_DB_ERROR', 'ER_NOT_SUPPORTED_AUTH_MODE', 'ER_HOST_NOT_PRIVILEGED', 'ER_HOST_IS_BLOCKED', 'HANDSHAKE_NO_SSL_SUPPORT', 'HANDSHAKE_SSL_ERROR', 'ENOTFOUND']);

/** MySQL's escapes for a quoted string (the session runs without NO_BACKSLASH_ESCAPES). */
const ESCAPES: Record<string, string> = { '\0': '\\0', '\b': '\\b', '\t': '\\t', '\n': '\\n', '\r': '\\r', '\x1a': '\\Z', '"': '\\"', "'": "\\'", '\\': '\\\\' };
const NEEDS_ESCAPE = /[\0\b\t\n\r\x1a"'\\]/g;

export const mysqlDialect = (options: PoolOptions): SqlDialect => ({
  scheme: 'mysql',
  schema: SCHEMA,
  currentSchema: 'DATABASE()',
  begin: 'START TRANSACTION',
  forUpdate: "SELECT batch_id FROM stream_progress WHERE job = $JOB AND `source` = '*' FOR UPDATE",
  async openDriver(_target: SqlTarget, logger: Logger): Promise<SqlDriver> {
    const mysql = await import('mysql2/promise');
    const pool = mysql.createPool(options);
    return new MysqlDriver(pool, logger);
  },
  async maxStatementChars(session: SqlSession): Promise<number> {
    const [row] = await session.query('SELECT @@max_allowed_packet AS p');
    // Characters, not bytes: a character is at most 3 UTF-8 bytes here (4 for a surrogate pair, which is 2 characters).
    return Math.max(64 * 1024, Math.min(4 << 20, Math.floor(Number(row.p) / 4)));
  },
  id: (name) => `\`${name}\``,
  str: (text) => `'${text.replace(NEEDS_ESCAPE, (c) => ESCAPES[c])}'`,
  num(x) {
    if (!Number.isFinite(x)) throw new Error(`${x} cannot be stored in a MySQL DOUBLE column`);
    return String(x);
  },
  time(ms) {
    const iso = new Date(ms).toISOString();
    return `'${iso.slice(0, 10)} ${iso.slice(11, 23)}'`;
  },
  bool: (b) => (b ? '1' : '0'),
  upsert: (key, columns) => ` ON DUPLICATE KEY UPDATE ${columns.filter((c) => !key.includes(c)).map((c) => `\`${c}\` = VALUES(\`${c}\`)`).join(', ')}`,
  epochMs: (column) => `(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', ${column}) DIV 1000)`,
  isRetriable(err) {
    const e = err as DriverError;
    const code = String(e?.code ?? '');
    if (SOCKET_ERRORS.has(code) || RETRIABLE_CODES.has(code)) return true;
    if (/connection is in closed state|Connection lost|Pool is closed/i.test(e?.message ?? '')) return true;
    return e?.fatal === true && !PERMANENT_CODES.has(code);
  },
  describe(err) {
    const e = err as DriverError;
    const text = e?.message || String(err);
    return e?.code ? `${text} (${e.code})` : text;
  },
});

class MysqlDriver implements SqlDriver {
  constructor(
    private readonly pool: Pool,
    private readonly logger: Logger,
  ) {}

  async connect(): Promise<SqlSession> {
    const conn = await this.pool.getConnection();
    try {
      await conn.query("SET SESSION time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'");
    } catch (err) {
      conn.destroy();
      throw err;
    }
    return new MysqlSession(conn, this.logger);
  }

  end(): Promise<void> {
    return this.pool.end();
  }
}

class MysqlSession implements SqlSession {
  lost: Error | null = null;
  private readonly onError = (err: Error) => {
    this.lost ??= err;
    this.logger.debug({ err: err.message }, 'mysql connection lost while idle');
  };

  constructor(
    private readonly conn: PoolConnection,
    private readonly logger: Logger,
  ) {
    conn.connection.on('error', this.onError);
  }

  async query(sql: string): Promise<SqlRow[]> {
    const [rows] = await this.conn.query(sql);
    return Array.isArray(rows) ? (rows as SqlRow[]) : [];
  }

  release(broken: boolean): void {
    this.conn.connection.off('error', this.onError);
    if (broken || this.lost) this.conn.destroy();
    else this.conn.release();
  }
}

/** mysql2 pool options from the URL (checked now: a bad option is a usage error before anything starts). */
function poolOptions(target: SqlTarget): PoolOptions {
  const options: PoolOptions = {
    host: target.host, port: target.port, user: target.user, password: target.password || undefined, database: target.database,
    connectionLimit: 2, dateStrings: true, timezone: 'Z', supportBigNumbers: true, charset: 'utf8mb4_general_ci',
  };
  for (const [key, value] of target.params) {
    if (key === 'ssl') {
      if (value === 'true' || value === '') options.ssl = {};
      else if (value === 'false') options.ssl = undefined;
      else if (value.startsWith('{')) {
        try {
          options.ssl = JSON.parse(value) as PoolOptions['ssl'];
        } catch {
          throw new UsageError(`--sink mysql: ?ssl= is not valid JSON; write ?ssl=true or ?ssl={"rejectUnauthorized":false}`);
        }
      } else options.ssl = value;
    } else if (key === 'connectTimeout') {
      const ms = Number(value);
      if (!Number.isInteger(ms) || ms <= 0) throw new UsageError(`--sink mysql: ?connectTimeout= must be milliseconds, e.g. ?connectTimeout=10000`);
      options.connectTimeout = ms;
    } else {
      throw new UsageError(`--sink mysql: unknown option "${key}" in the URL; known: ssl, connectTimeout`);
    }
  }
  return options;
}

/** `--sink mysql://USER[:PASS]@HOST:PORT/DB`: a SqlStore on MySQL/MariaDB. No driver is loaded until open(). */
export function createMysqlStore(spec: string, logger: Logger, env: NodeJS.ProcessEnv = process.env): SqlStore {
  const target = parseSqlTarget(spec, env);
  return new SqlStore(target, mysqlDialect(poolOptions(target)), logger);
}

/**
 * `query --store mysql://...`: what the store reader (sql/sql-reader.ts) needs: the dialect and one
 * connection with bound parameters (Date values go in as UTC). No driver is loaded until connect().
 */
export function mysqlReadAccess(spec: string, env: NodeJS.ProcessEnv = process.env): SqlReadAccess {
  const target = parseSqlTarget(spec, env);
  const { connectionLimit: _poolOnly, ...options } = poolOptions(target);
  return {
    target,
    dialect: mysqlDialect(options),
    async connect(): Promise<SqlReadConnection> {
      const mysql = await import('mysql2/promise');
      const conn = await mysql.createConnection({ connectTimeout: 10_000, ...options });
      // A connection lost while idle emits 'error': without a listener that would end the process.
      // The next query fails, and the reader connects again.
      conn.on('error', () => undefined);
      try {
        await conn.query("SET SESSION time_zone = '+00:00'");
      } catch (err) {
        conn.destroy();
        throw err;
      }
      return {
        async query(sql, params) {
          const [rows] = await conn.query(sql, params as unknown[]);
          return Array.isArray(rows) ? (rows as SqlRow[]) : [];
        },
        end: () => conn.end(),
      };
    },
  };
}
