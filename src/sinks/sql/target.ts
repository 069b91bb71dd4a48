// Where a SQL store is: `mysql://USER[:PASS]@HOST:PORT/DB[?OPTIONS]` or
// `postgres://USER[:PASS]@HOST:PORT/DB[?OPTIONS]` (also `postgresql://`), parsed once when the sink is
// built, so that a bad URL is a usage error before anything starts.
//
// The password comes from the URL, else from COINSTREAM_MYSQL_PASSWORD / COINSTREAM_POSTGRES_PASSWORD.
// It is never printed: `display` (the sink's name, every log line) shows `***` in its place, and
// `mask` takes it out of any text that might echo it (a driver's error message).
import { UsageError } from '../../core/errors.js';

export type SqlScheme = 'mysql' | 'postgres';

export interface SqlTarget {
  scheme: SqlScheme;
  user: string;
  /** Empty when there is none. */
  password: string;
  host: string;
  port: number;
  database: string;
  /** The URL's query string (TLS and other driver options; see each dialect). */
  params: URLSearchParams;
  /** The URL as it may be shown: password as `***`, no query string (it may hold key paths or passphrases). */
  display: string;
}

const DEFAULT_PORT: Record<SqlScheme, number> = { mysql: 3306, postgres: 5432 };
const PASSWORD_ENV: Record<SqlScheme, string> = { mysql: 'COINSTREAM_MYSQL_PASSWORD', postgres: 'COINSTREAM_POSTGRES_PASSWORD' };

export function parseSqlTarget(spec: string, env: NodeJS.ProcessEnv = process.env): SqlTarget {
  const scheme: SqlScheme = spec.startsWith('mysql://') ? 'mysql' : 'postgres';
  const form = `${scheme}://USER[:PASS]@HOST:PORT/DB`;
  // The message never repeats the spec itself: it may hold a password.
  const bad = (what: string) => new UsageError(`--sink ${scheme}: ${what}; write --sink ${form} (e.g. ${scheme}://${scheme === 'mysql' ? 'root' : 'postgres'}@127.0.0.1:${DEFAULT_PORT[scheme]}/test)`);
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw bad('not a valid URL (is the port a number 1-65535?)');
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host) throw bad('no host');
  const port = url.port === '' ? DEFAULT_PORT[scheme] : Number(url.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad(`port ${url.port} is not 1-65535`);
  const path = url.pathname.replace(/^\//, '');
  if (!path) throw bad('no database in the URL');
  if (path.includes('/')) throw bad('the path must be just the database name');
  const decode = (text: string, what: string) => {
    try {
      return decodeURIComponent(text);
    } catch {
      throw bad(`the ${what} is not valid percent-encoding`);
    }
  };
  const database = decode(path, 'database');
  const user = decode(url.username, 'user');
  if (!user) throw bad('no user');
  const password = url.password ? decode(url.password, 'password') : (env[PASSWORD_ENV[scheme]] ?? '');
  const shownHost = host.includes(':') ? `[${host}]` : host;
  const display = `${scheme}://${url.username}${password ? ':***' : ''}@${shownHost}:${port}/${path}`;
  return { scheme, user, password, host, port, database, params: url.searchParams, display };
}

/** The text with the password (raw or percent-encoded) replaced by ***. */
export function mask(text: string, password: string): string {
  if (!password) return text;
  let out = text.split(password).join('***');
  const encoded = encodeURIComponent(password);
  if (encoded !== password) out = out.split(encoded).join('***');
  return out;
}
