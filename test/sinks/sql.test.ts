// The SQL stores (--sink mysql://..., --sink postgres://...) against the real servers: MariaDB on
// 127.0.0.1:3306 (root, no password) and PostgreSQL on 127.0.0.1:5432 (postgres, trust). Every test
// gets a fresh database and drops it afterwards. A server that is not reachable skips its tests with
// a printed reason, or fails them when COINSTREAM_REQUIRE_SERVICES=1 (CI).
//
// What a store holds is compared with a DuckDB store (proven equal to the SQL oracle elsewhere):
// every column of trade_windows and price_trends (doubles within 1e-9 relative), and rejected_trades
// and trades as multisets, processing-time columns (received_at, updated_at) aside.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CoinstreamError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { parseSinkSpec } from '../../src/sinks/spec.js';
import { batchesWritten, count, finished, killAll, spawnCoinstream } from '../helpers/process.js';
import { inputs } from '../oracle/inputs.js';
import { expectEqualToDuckDB } from './sql-compare.js';
import { PEERS, type Peer } from './sql-peers.js';

const REQUIRE = process.env.COINSTREAM_REQUIRE_SERVICES === '1';
const dir = mkdtempSync(join(tmpdir(), 'coinstream-sql-'));
const FILE = join(dir, 'malformed.jsonl');
const REF = join(dir, 'reference.duckdb');
const SOURCE = ['--source', `replay:${FILE}`];
const MAX = [...SOURCE, '--speed', 'max', '--no-dashboard'];
const PACED = [...SOURCE, '--speed', '1200', '--trigger', '100ms', '--no-dashboard'];
const DEBUG = { COINSTREAM_LOG_LEVEL: 'debug' };

beforeAll(async () => {
  // The Kraken hour, disordered, with malformed and invalid lines and far-late trades.
  writeFileSync(FILE, inputs.malformed());
  const ref = await finished(spawnCoinstream(['run', ...MAX, '--sink', `duckdb:${REF}`]));
  expect(ref.stderr(), 'the reference run rejected nothing: the input is not the one meant').toMatch(/"late":[1-9]/);
}, 60_000);

afterEach(() => killAll());
afterAll(() => rmSync(dir, { recursive: true, force: true }));


describe('SQL sink specs', () => {
  it('builds mysql and postgres stores with the password masked, and refuses bad URLs with what to write', () => {
    expect(parseSinkSpec('mysql://root:s3cret@127.0.0.1:3306/test', silentLogger)[0].name).toBe('mysql://root:***@127.0.0.1:3306/test');
    expect(parseSinkSpec('mysql://root@127.0.0.1:3306/test', silentLogger)[0].name).toBe('mysql://root@127.0.0.1:3306/test');
    expect(parseSinkSpec('postgres://postgres@127.0.0.1:5432/test', silentLogger)[0].name).toBe('postgres://postgres@127.0.0.1:5432/test');
    expect(parseSinkSpec('postgresql://u:p%40ss@db.example:6543/x?sslmode=require', silentLogger)[0].name).toBe('postgres://u:***@db.example:6543/x');
    const bad = (spec: string) => {
      try {
        parseSinkSpec(spec, silentLogger);
      } catch (err) {
        expect(err).toBeInstanceOf(CoinstreamError);
        expect((err as CoinstreamError).code).toBe('USAGE');
        expect((err as Error).message).not.toContain('s3cret');
        return (err as Error).message;
      }
      throw new Error(`${spec} was accepted`);
    };
    expect(bad('mysql://root:s3cret@127.0.0.1:3306')).toMatch(/no database.*write --sink mysql:\/\/USER\[:PASS\]@HOST:PORT\/DB/);
    expect(bad('mysql://root:s3cret@127.0.0.1:99999/test')).toMatch(/port.*write --sink mysql:\/\//);
    expect(bad('postgres://root:s3cret@127.0.0.1:54x2/test')).toMatch(/write --sink postgres:\/\//);
    expect(bad('mysql://root@127.0.0.1:3306/test?ssl={oops')).toMatch(/ssl/);
    // pg ignores what it does not know: a typo'd sslmode connected without TLS.
    expect(bad('postgres://u:s3cret@127.0.0.1:5432/x?sslmod=require')).toMatch(/unknown option "sslmod" in the URL; known: sslmode, /);
    expect(bad('postgres://u:s3cret@127.0.0.1:5432/x?sslmode=requir')).toMatch(/sslmode "requir" is not one of disable, prefer, require/);
    expect(parseSinkSpec('postgres://u@127.0.0.1:5432/x?sslmode=verify-full&application_name=cs&connect_timeout=5', silentLogger)[0].name).toBe('postgres://u@127.0.0.1:5432/x');
  });
});

for (const peer of PEERS) {
  const unreachable = await peer.unreachable();
  if (unreachable && !REQUIRE) console.warn(`skipping the ${peer.kind} store tests: ${unreachable}`);

  describe.skipIf(unreachable !== null && !REQUIRE)(`${peer.kind} store`, () => {
    const dbs: string[] = [];
    beforeAll(() => {
      if (unreachable) throw new Error(`the ${peer.kind} server is needed (COINSTREAM_REQUIRE_SERVICES=1) but ${unreachable}`);
    });
    afterAll(async () => {
      for (const db of dbs) await peer.drop(db);
      await peer.end();
    });
    const fresh = async () => {
      const db = await peer.create();
      dbs.push(db);
      return db;
    };

    it('ends equal to the DuckDB store (--speed max, malformed and late input); the same job again adds nothing', async () => {
      const db = await fresh();
      const duck = join(dir, `${peer.kind}-max.duckdb`);
      const args = ['run', ...MAX, '--sink', `duckdb:${duck}`, '--sink', peer.url(db)];
      await finished(spawnCoinstream(args));
      await expectEqualToDuckDB(peer, db, duck, 'first run');
      await expectEqualToDuckDB(peer, db, REF, 'first run against the reference');
      const progress = await peer.rows(db, `SELECT job, ${peer.q('source')} AS source, watermark, finished FROM stream_progress ORDER BY 2`);
      expect(progress.map((r) => [r.job, r.source, Number(r.watermark) >= Number.MAX_VALUE, Boolean(Number(r.finished) || r.finished === true)])).toEqual([
        ['run', '*', true, true],
        ['run', `replay:${FILE}`, true, true],
      ]);

      const again = await finished(spawnCoinstream(['run', ...MAX, '--sink', peer.url(db)]));
      expect(again.stderr()).toMatch(/job \\"run\\" already finished/);
      await expectEqualToDuckDB(peer, db, REF, 'second run');
    }, 120_000);

    it('ends equal after a paced run (update mode: rows upserted many times)', async () => {
      const db = await fresh();
      const run = await finished(spawnCoinstream(['run', ...PACED, '--sink', peer.url(db)], DEBUG));
      expect(batchesWritten(run.stderr())).toBeGreaterThan(5);
      await expectEqualToDuckDB(peer, db, REF, 'paced run');
    }, 120_000);

    it('is exact after SIGKILL mid-way and the same command again (archive included)', async () => {
      const db = await fresh();
      const args = ['run', ...PACED, '--sink', peer.url(db)];
      const killed = spawnCoinstream(args, DEBUG);
      await killed.waitFor('stderr', (out) => batchesWritten(out) >= 3);
      killed.child.kill('SIGKILL');
      expect((await killed.exit).signal).toBe('SIGKILL');
      expect(killed.stderr()).not.toMatch(/"msg":"done: /);
      const again = await finished(spawnCoinstream(args));
      expect(again.stderr()).toMatch(/resuming job \\"run\\" after batch \d+/);
      await expectEqualToDuckDB(peer, db, REF, 'killed and restarted');
    }, 120_000);

    it('rides out its connections being killed (twice or more): exits 0 with exact rows, logs the outage and the recovery', async () => {
      const db = await fresh();
      const run = spawnCoinstream(['run', ...SOURCE, '--speed', '300', '--trigger', '100ms', '--no-dashboard', '--sink', peer.url(db)], DEBUG);
      const outages = count(/lost the connection to the server/);
      const recoveries = count(/the server is back after/);
      let kills = 0;
      // Kill after a batch is written, then wait for the store to be back and write more; at least twice.
      while (kills < 2 || outages(run.stderr()) < 1) {
        const seen = batchesWritten(run.stderr());
        await run.waitFor('stderr', (out) => batchesWritten(out) > seen || /"msg":"done: /.test(out));
        if (/"msg":"done: /.test(run.stderr())) break;
        const back = recoveries(run.stderr());
        if ((await peer.kill(db)) === 0) continue;
        kills++;
        await run.waitFor('stderr', (out) => recoveries(out) > back || /"msg":"done: /.test(out));
      }
      await finished(run);
      expect(kills, 'the run ended before its connections were killed twice: make it slower').toBeGreaterThanOrEqual(2);
      const err = run.stderr();
      expect(outages(err)).toBeGreaterThanOrEqual(1);
      expect(recoveries(err)).toBeGreaterThanOrEqual(1);
      expect(err).toMatch(/"level":40[^\n]*lost the connection to the server \(/);
      expect(err).toMatch(/"level":30[^\n]*the server is back after \d+\.\d s/);
      await expectEqualToDuckDB(peer, db, REF, 'after the outages');
    }, 180_000);

    it('two runs of one job started on the same database at once: one is fenced off, and the store stays exact', async () => {
      const db = await fresh();
      await finished(spawnCoinstream(['run', ...PACED, '--batches', '1', '--sink', peer.url(db)]));
      // Both read the job at batch 0; whichever commits first moves it on, and the other's next batch
      // is refused. (Before, both wrote every trade from batch 1 on, and both exited 0.)
      const both = [0, 1].map(() => spawnCoinstream(['run', ...PACED, '--sink', peer.url(db)]));
      const exits = await Promise.all(both.map((r) => r.exit));
      const outcome = both.map((r, i) => ({ code: exits[i].code, stderr: r.stderr() }));
      const fenced = outcome.filter((o) => o.code === 1 && /is at batch \d+, not \d+ as when this process read it: another process wrote it meanwhile.*\[FENCED\]/.test(o.stderr));
      const stoodAside = outcome.filter((o) => o.code === 0 && /job \\"run\\" already finished/.test(o.stderr));
      expect(outcome.filter((o) => o.code === 0).length, outcome.map((o) => o.stderr.slice(-1500)).join('\n---\n')).toBe(1);
      expect(fenced.length + stoodAside.length, 'the other run must be fenced off (or find the job finished)').toBe(1);
      await expectEqualToDuckDB(peer, db, REF, 'after two runs at once');
    }, 120_000);

    it('a database that holds another job (a process group\'s) is refused by run, and by run --fresh, which would delete it', async () => {
      const db = await fresh();
      await finished(spawnCoinstream(['run', ...MAX, '--sink', peer.url(db)]));
      // What a `process` group's partition leaves: progress under its job, rows in the shared tables.
      await peer.rows(db, `UPDATE stream_progress SET job = 'coinstream/coincap_trade/0'`);
      const held = async () => (await peer.rows(db, 'SELECT (SELECT count(*) FROM trade_windows) AS w, (SELECT count(*) FROM trades) AS t, (SELECT count(*) FROM stream_progress) AS p'))[0];
      const before = await held();
      for (const [extra, harm] of [
        [[], 'the results of job "run" would mix with theirs'],
        [['--fresh'], "--fresh would delete their results with this job's"],
      ] as const) {
        const r = spawnCoinstream(['run', ...MAX, ...extra, '--sink', peer.url(db)], { COINSTREAM_LOG_LEVEL: 'warn' });
        expect((await r.exit).code, r.stderr()).toBe(2);
        expect(r.stderr().trim().split('\n')).toEqual([
          `coinstream: ${peer.url(db)} holds the results of another job ("coinstream/coincap_trade/0"); its tables are shared by every job written to it, so ${harm}: give this job a store of its own`,
        ]);
        expect(await held()).toEqual(before);
      }
    }, 60_000);

    it('refuses a database whose table of our name is another\'s: exit 2, one line, no table made', async () => {
      const db = await fresh();
      await peer.rows(db, 'CREATE TABLE trade_windows (id INT PRIMARY KEY, foo TEXT)');
      const r = spawnCoinstream(['run', ...MAX, '--sink', peer.url(db)], { COINSTREAM_LOG_LEVEL: 'warn' });
      expect((await r.exit).code, r.stderr()).toBe(2);
      expect(r.stderr().trim().split('\n')).toEqual([
        `coinstream: ${peer.url(db)} is not a coinstream store: its table trade_windows has the columns (id, foo), not coinstream's; give another database in --sink`,
      ]);
      const schema = peer.kind === 'mysql' ? 'DATABASE()' : 'current_schema()';
      const tables = await peer.rows(db, `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = ${schema}`);
      expect(tables.map((t) => String(t.t))).toEqual(['trade_windows']);

      // `query` on it says the same, in one line (it said only "Unknown column 'asset'", exit 1).
      const q = spawnCoinstream(['query', '--store', peer.url(db)], { COINSTREAM_LOG_LEVEL: 'warn' });
      expect((await q.exit).code, q.stderr()).toBe(2);
      const lines = q.stderr().trim().split('\n');
      expect(lines).toEqual([`coinstream: ${peer.url(db)} is not a coinstream store: its table trade_windows has the columns (id, foo), not coinstream's; point --store at a database coinstream wrote`]);
    }, 60_000);

    it('a user who may only read and write the tables (made beforehand) runs the job; where one is missing, the error says what it needs', async () => {
      const db = await fresh();
      // An administrator's part: the tables (here, by a first run that stops after one batch).
      await finished(spawnCoinstream(['run', ...PACED, '--batches', '1', '--sink', peer.url(db)]));
      const password = `p-${Math.random().toString(36).slice(2, 10)}`;
      const user = await peer.createUser(db, password, 'dml');
      // Before, every open ran CREATE TABLE IF NOT EXISTS, which needs CREATE even for a table that is there.
      const r = await finished(spawnCoinstream(['run', ...MAX, '--sink', peer.url(db, user, password)]));
      expect(r.stderr()).toMatch(/resuming job \\"run\\" after batch 0/);
      await expectEqualToDuckDB(peer, db, REF, 'written by a user without CREATE');

      await peer.rows(db, 'DROP TABLE rejected_trades');
      const denied = spawnCoinstream(['run', ...MAX, '--sink', peer.url(db, user, password)], { COINSTREAM_LOG_LEVEL: 'warn' });
      expect((await denied.exit).code).toBe(1);
      expect(denied.stderr().trim().split('\n').at(-1)).toMatch(/cannot open the store: .*; the user needs the privilege to create the tables that are not there \(rejected_trades\), or an administrator makes them first/);
    }, 120_000);

    it('never prints the password (URL or environment); a failure names the store with ***', async () => {
      const db = await fresh();
      const password = `s3cret-${Math.random().toString(36).slice(2, 10)}`;
      const user = await peer.createUser(db, password);
      const ok = await finished(spawnCoinstream(['run', ...MAX, '--sink', peer.url(db, user, password)]));
      expect(ok.stderr()).toContain(`${user}:***@`);
      expect(ok.stdout() + ok.stderr()).not.toContain(password);

      const fromEnv = await finished(spawnCoinstream(['run', ...MAX, '--fresh', '--sink', peer.url(db, user)], { [peer.passwordEnv]: password }));
      expect(fromEnv.stderr()).toContain(`${user}:***@`);
      expect(fromEnv.stdout() + fromEnv.stderr()).not.toContain(password);

      if (peer.checksPasswords) {
        const wrong = spawnCoinstream(['run', ...MAX, '--sink', peer.url(db, user, `${password}-wrong`)]);
        expect((await wrong.exit).code).toBe(1);
        expect(wrong.stderr()).toMatch(new RegExp(`${user}:\\*\\*\\*@.*(denied|authentication)`, 'i'));
        expect(wrong.stdout() + wrong.stderr()).not.toContain(password);
      }
    }, 120_000);
  });
}
