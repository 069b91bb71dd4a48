// The real SQL servers the SQL store tests run against, behind one small interface: fresh databases,
// reading rows back, killing a database's connections, a user with a password.
import mysql from 'mysql2/promise';
import pg from 'pg';

export type Row = Record<string, unknown>;

export interface Peer {
  kind: 'mysql' | 'postgres';
  /** Why the server cannot be used, or null. */
  unreachable(): Promise<string | null>;
  /** A fresh, empty database; its name. */
  create(): Promise<string>;
  drop(db: string): Promise<void>;
  end(): Promise<void>;
  url(db: string, user?: string, password?: string): string;
  passwordEnv: string;
  /** False where the server trusts every local connection (the password is never checked). */
  checksPasswords: boolean;
  /** A user with this password that may use `db`; its name. */
  /** A user of `db`: with every privilege, or (`dml`) only reading and writing the tables there now. */
  createUser(db: string, password: string, privileges?: 'all' | 'dml'): Promise<string>;
  rows(db: string, sql: string): Promise<Row[]>;
  /** Kills every connection to `db` but the asking one; how many. */
  kill(db: string): Promise<number>;
  /** A SELECT of a table's compared columns: times as epoch ms, numbers as doubles. */
  select(t: { name: string; columns: string[]; numeric: string[]; times: string[] }): string;
  q(name: string): string;
}

const HOST = '127.0.0.1';
const name = (prefix: string) => `${prefix}${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;

function selectOf(t: { name: string; columns: string[]; numeric: string[]; times: string[] }, ms: (c: string) => string, num: (c: string) => string, q: (c: string) => string): string {
  const cols = t.columns.map((c) => (t.times.includes(c) ? `${ms(q(c))} AS ${q(c)}` : t.numeric.includes(c) ? `${num(q(c))} AS ${q(c)}` : q(c)));
  return `SELECT ${cols.join(', ')} FROM ${t.name}`;
}

const mysqlAdmin = { host: HOST, port: 3306, user: 'root' };

const mysqlPeer: Peer = {
  kind: 'mysql',
  passwordEnv: 'COINSTREAM_MYSQL_PASSWORD',
  checksPasswords: true,
  async unreachable() {
    try {
      const c = await mysql.createConnection({ ...mysqlAdmin, database: 'test', connectTimeout: 3000 });
      await c.end();
      return null;
    } catch (err) {
      return `MariaDB/MySQL at ${HOST}:3306 (root, database test) is not reachable: ${(err as Error).message}`;
    }
  },
  async create() {
    const db = name('coinstream_t_');
    await this.rows('', `CREATE DATABASE ${db}`);
    return db;
  },
  async drop(db) {
    await this.rows('', `DROP DATABASE IF EXISTS ${db}`);
    await this.rows('', `DROP USER IF EXISTS '${db.slice(-20)}'@'%'`);
  },
  async end() {},
  url: (db, user = 'root', password) => `mysql://${user}${password === undefined ? '' : `:${encodeURIComponent(password)}`}@${HOST}:3306/${db}`,
  async createUser(db, password, privileges = 'all') {
    const user = db.slice(-20);
    await this.rows('', `CREATE USER '${user}'@'%' IDENTIFIED BY '${password}'`);
    await this.rows('', `GRANT ${privileges === 'all' ? 'ALL' : 'SELECT, INSERT, UPDATE, DELETE'} ON ${db}.* TO '${user}'@'%'`);
    return user;
  },
  async rows(db, sql) {
    const c = await mysql.createConnection({ ...mysqlAdmin, database: db || undefined });
    try {
      const [rows] = await c.query(sql);
      return Array.isArray(rows) ? (rows as Row[]) : [];
    } finally {
      await c.end();
    }
  },
  async kill(db) {
    const c = await mysql.createConnection(mysqlAdmin);
    try {
      const [rows] = await c.query('SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()', [db]);
      let killed = 0;
      for (const { id } of rows as { id: number }[]) {
        try {
          await c.query(`KILL CONNECTION ${Number(id)}`);
          killed++;
        } catch (err) {
          if ((err as { code?: string }).code !== 'ER_NO_SUCH_THREAD') throw err;
        }
      }
      return killed;
    } finally {
      await c.end();
    }
  },
  select: (t) => selectOf(t, (c) => `(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', ${c}) DIV 1000)`, (c) => `${c}`, (c) => `\`${c}\``),
  q: (c) => `\`${c}\``,
};

const pgAdmin = { host: HOST, port: 5432, user: 'postgres' };

async function pgQuery(database: string, sql: string, params: unknown[] = []): Promise<Row[]> {
  const c = new pg.Client({ ...pgAdmin, database, connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as Row[];
  } finally {
    await c.end();
  }
}

const postgresPeer: Peer = {
  kind: 'postgres',
  passwordEnv: 'COINSTREAM_POSTGRES_PASSWORD',
  // The test server trusts local connections: a password is sent (and masked) but never checked.
  checksPasswords: false,
  async unreachable() {
    try {
      await pgQuery('test', 'SELECT 1');
      return null;
    } catch (err) {
      return `PostgreSQL at ${HOST}:5432 (postgres, database test) is not reachable: ${(err as Error).message}`;
    }
  },
  async create() {
    const db = name('coinstream_t_');
    await pgQuery('test', `CREATE DATABASE ${db}`);
    return db;
  },
  async drop(db) {
    await pgQuery('test', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await pgQuery('test', `DROP ROLE IF EXISTS u_${db.slice(-20)}`);
  },
  async end() {},
  url: (db, user = 'postgres', password) => `postgres://${user}${password === undefined ? '' : `:${encodeURIComponent(password)}`}@${HOST}:5432/${db}`,
  async createUser(db, password, privileges = 'all') {
    const user = `u_${db.slice(-20)}`;
    await pgQuery('test', `CREATE ROLE ${user} LOGIN PASSWORD '${password}'`);
    if (privileges === 'all') {
      await pgQuery('test', `ALTER DATABASE ${db} OWNER TO ${user}`);
      await pgQuery(db, `GRANT ALL ON SCHEMA public TO ${user}`);
    } else {
      await pgQuery(db, `REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
      await pgQuery(db, `GRANT USAGE ON SCHEMA public TO ${user}`);
      await pgQuery(db, `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${user}`);
    }
    return user;
  },
  rows: (db, sql) => pgQuery(db, sql),
  async kill(db) {
    const rows = await pgQuery('test', 'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db]);
    return rows.filter((r) => r.ok === true).length;
  },
  select: (t) => selectOf(t, (c) => `(extract(epoch from ${c}) * 1000)::float8`, (c) => c, (c) => `"${c}"`),
  q: (c) => `"${c}"`,
};

export const PEERS: Peer[] = [mysqlPeer, postgresPeer];
