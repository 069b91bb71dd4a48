// `coinstream run --sink mysql://...` while its MariaDB server is really shut down (SIGTERM: the server
// closes every connection and exits) and started again on the same port and data directory, twice:
// the run rides it out, exits 0, holds exactly the rows of an uninterrupted run, and logs one outage
// (warn) and one recovery (info) per restart.
//
// Other test files use the shared MariaDB on 127.0.0.1:3306 at the same time, so this one must not stop
// it: it installs and runs a private server (mariadb-install-db + mariadbd, as the current user, in a
// temporary directory, on a free port). CI installs mariadb-server; without its binaries the test fails
// and says so (no skipping: a skipped test would prove nothing).
//
// Every wait is for an event (a log line, a connection that works, a process exit), never for time.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { batchesWritten, count, finished, freePort, killAll, spawnCoinstream } from '../helpers/process.js';
import { inputs } from '../oracle/inputs.js';
import { expectEqualToDuckDB } from './sql-compare.js';
import { PEERS, type Row } from './sql-peers.js';

const dir = mkdtempSync(join(tmpdir(), 'coinstream-mariadb-'));
const FILE = join(dir, 'malformed.jsonl');
const REF = join(dir, 'reference.duckdb');
const SOURCE = ['--source', `replay:${FILE}`];
const DEBUG = { COINSTREAM_LOG_LEVEL: 'debug' };
const HOST = '127.0.0.1';
// Only its SELECT builder is used: the shared server's peer is not touched.
const MYSQL = PEERS.find((p) => p.kind === 'mysql')!;

/** The first executable of `names` on PATH or in the sbin directories (mariadbd is not on a user's PATH). */
function which(...names: string[]): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/bin'];
  for (const name of names) {
    for (const d of dirs.filter(Boolean)) {
      try {
        accessSync(join(d, name), constants.X_OK);
        return join(d, name);
      } catch {
        // not here
      }
    }
  }
  return null;
}

const MARIADBD = which('mariadbd', 'mysqld');
const INSTALL_DB = which('mariadb-install-db', 'mysql_install_db');

/** A MariaDB server of this test's own: root without a password on 127.0.0.1:port, data in dir/data. */
class PrivateMariaDB {
  private child: ChildProcess | null = null;
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | null = null;
  /** What the server printed (its error log goes to stderr), for failure messages. */
  private log = '';

  constructor(
    private readonly dir: string,
    readonly port: number,
  ) {}

  url = (db: string) => `mysql://root@${HOST}:${this.port}/${db}`;

  /** A fresh data directory with root@127.0.0.1 allowed in without a password. */
  async install(): Promise<void> {
    const args = ['--no-defaults', '--auth-root-authentication-method=normal', '--skip-test-db', `--datadir=${join(this.dir, 'data')}`, `--user=${userInfo().username}`];
    try {
      await promisify(execFile)(INSTALL_DB!, args, { timeout: 60_000 });
    } catch (err) {
      const e = err as Error & { stdout?: string; stderr?: string };
      throw new Error(`${INSTALL_DB} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
    }
  }

  /** Starts mariadbd and resolves once a connection works; rejects with its log if it exits first. */
  async start(): Promise<void> {
    const args = [
      '--no-defaults',
      `--datadir=${join(this.dir, 'data')}`,
      `--port=${this.port}`,
      `--bind-address=${HOST}`,
      `--socket=${join(this.dir, 'mysqld.sock')}`,
      `--pid-file=${join(this.dir, 'mysqld.pid')}`,
      `--user=${userInfo().username}`,
      // No reverse DNS of 127.0.0.1; small and quick to start and stop (no buffer pool dump/load).
      '--skip-name-resolve',
      '--innodb-buffer-pool-size=32M',
      '--innodb-buffer-pool-dump-at-shutdown=0',
      '--innodb-buffer-pool-load-at-startup=0',
    ];
    const child = spawn(MARIADBD!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.log += `--- ${MARIADBD} ${args.join(' ')} ---\n`;
    child.stdout!.on('data', (d) => (this.log += d));
    child.stderr!.on('data', (d) => (this.log += d));
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    // Polled: mariadbd has no readiness signal but its log line; refused connections fail at once.
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`mariadbd exited (${child.exitCode ?? child.signalCode}) before accepting connections:\n${this.logTail()}`);
      try {
        await (await this.connect()).end();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`mariadbd on port ${this.port} accepts no connection (safety net): ${(err as Error).message}\n${this.logTail()}`);
      }
      await pause(50);
    }
  }

  /** A real shutdown: SIGTERM, then until the process has exited (0) and the port is closed. */
  async stop(): Promise<void> {
    const child = this.child!;
    child.kill('SIGTERM');
    const { code, signal } = await this.exited!;
    this.child = null;
    expect({ code, signal }, `mariadbd did not shut down cleanly:\n${this.logTail()}`).toEqual({ code: 0, signal: null });
  }

  /** SIGKILL (cleanup after a failure) and until it has exited. */
  async kill(): Promise<void> {
    if (!this.child) return;
    this.child.kill('SIGKILL');
    await this.exited;
    this.child = null;
  }

  connect(db?: string) {
    return mysql.createConnection({ host: HOST, port: this.port, user: 'root', database: db, connectTimeout: 3000 });
  }

  async rows(db: string | undefined, sql: string): Promise<Row[]> {
    const c = await this.connect(db);
    try {
      const [rows] = await c.query(sql);
      return Array.isArray(rows) ? (rows as Row[]) : [];
    } finally {
      await c.end();
    }
  }

  logTail = () => this.log.slice(-4000);
}

let server: PrivateMariaDB | null = null;

beforeAll(async () => {
  if (!MARIADBD || !INSTALL_DB) {
    throw new Error(
      `this test runs a private MariaDB server but ${[!MARIADBD && 'mariadbd', !INSTALL_DB && 'mariadb-install-db'].filter(Boolean).join(' and ')} ` +
        `cannot be found (PATH, /usr/sbin): install MariaDB's server (apt-get install mariadb-server), as CI does`,
    );
  }
  writeFileSync(FILE, inputs.malformed());
  server = new PrivateMariaDB(dir, await freePort());
  await server.install();
  await server.start();
  await server.rows(undefined, 'CREATE DATABASE test');
  // The reference: the same input, uninterrupted, into DuckDB (proven equal to the SQL oracle elsewhere).
  await finished(spawnCoinstream(['run', ...SOURCE, '--speed', 'max', '--no-dashboard', '--sink', `duckdb:${REF}`]));
}, 120_000);

afterEach(() => killAll());
afterAll(async () => {
  await server?.kill();
  rmSync(dir, { recursive: true, force: true });
});

const outages = count(/lost the connection to the server \(/);
const recoveries = count(/the server is back after/);
const done = (out: string) => /"msg":"done: /.test(out);

describe('mysql store, its MariaDB server restarted', () => {
  it('rides out the server shutting down and starting again (twice): exits 0 with exact rows, one outage and one recovery line each', async () => {
    // Paced (the hour in about 18 s, a batch every 100 ms) so that the run is mid-way at each restart;
    // the reading waits during an outage and catches up after, so the restarts do not end it early.
    const run = spawnCoinstream(['run', ...SOURCE, '--speed', '200', '--trigger', '100ms', '--no-dashboard', '--sink', server!.url('test')], DEBUG);
    let restarts = 0;
    while (restarts < 2) {
      // Stop the server only after a batch (two at first) written since it last came back: mid-run.
      const seen = batchesWritten(run.stderr());
      await run.waitFor('stderr', (out) => batchesWritten(out) >= Math.max(seen + 1, 2) || done(out));
      if (done(run.stderr())) break;
      const lost = outages(run.stderr());
      const back = recoveries(run.stderr());
      await server!.stop();
      // The store notices at its next write (the idle connection was closed by the shutdown), unless
      // the run wrote its last batch just before: then there is nothing left to survive.
      await run.waitFor('stderr', (out) => outages(out) > lost || done(out));
      await server!.start();
      if (done(run.stderr())) break;
      // The store reconnects on its own backoff (up to 10 s apart) and writes the batch again.
      await run.waitFor('stderr', (out) => recoveries(out) > back, 60_000);
      restarts++;
    }
    await finished(run);
    expect(restarts, 'the run ended before the server was restarted twice: make it slower').toBe(2);
    const err = run.stderr();
    // One warn line as each outage starts, one info line as it ends: no more, no fewer.
    expect(outages(err)).toBe(2);
    expect(recoveries(err)).toBe(2);
    expect(err).toMatch(/"level":40[^\n]*lost the connection to the server \(/);
    expect(err).toMatch(/"level":30[^\n]*the server is back after \d+\.\d s/);
    await expectEqualToDuckDB(MYSQL, 'test', REF, 'after two restarts', (db, sql) => server!.rows(db, sql));
  }, 180_000);
});
