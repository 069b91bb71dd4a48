// `coinstream dashboard --store SPEC` end to end: one `coinstream run` writes the same replay (the Kraken
// hour as bitcoin, the same trades relabelled ethereum, and one trade of an asset with a hostile name)
// into DuckDB, MySQL (MariaDB), PostgreSQL and Delta at once; then a dashboard is started on each store
// and its API is read over real HTTP. Every store must answer the same (updatedAt aside, doubles within
// 1e-9 relative). A SQL server that is not reachable is left out with a printed reason, or fails the
// file when COINSTREAM_REQUIRE_SERVICES=1 (CI). No fixed sleeps: every wait is for a log line or an exit.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SECURITY_HEADERS } from '../../src/dashboard/server.js';
import { freePort, killAll, spawnCoinstream, type Spawned } from '../helpers/process.js';
import { PEERS, type Peer } from '../sinks/sql-peers.js';

const REQUIRE = process.env.COINSTREAM_REQUIRE_SERVICES === '1';
const HOSTILE = '<img src=x onerror=alert(1)>';
const KRAKEN = 'data/kraken-btcusd-2019-07-01.coincap.jsonl';

const dir = mkdtempSync(join(tmpdir(), 'coinstream-store-dashboard-'));
const FILE = join(dir, 'three-assets.jsonl');
const DUCKDB = join(dir, 'store.duckdb');
const DELTA = join(dir, 'delta');

// The SQL servers that can be used (all of them when services are required: an unreachable one fails).
const peers: Peer[] = [];
for (const peer of PEERS) {
  const unreachable = await peer.unreachable();
  if (unreachable && !REQUIRE) console.warn(`store dashboard tests: leaving out the ${peer.kind} store: ${unreachable}`);
  else peers.push(peer);
}
const databases = new Map<Peer, string>();

interface Store {
  kind: string;
  spec: () => string;
}
const STORES: Store[] = [
  { kind: 'duckdb', spec: () => `duckdb:${DUCKDB}` },
  ...peers.map((peer) => ({ kind: peer.kind, spec: () => peer.url(databases.get(peer)!) })),
  { kind: 'delta', spec: () => `delta:${DELTA}` },
];

/** What each store's dashboard answered, for the comparison across stores. */
const answers = new Map<string, { windows: unknown[]; trends: unknown[]; hostile: unknown[] }>();

beforeAll(async () => {
  // Ethereum's copy of each line right after it (appended at the end, its trades would all be late),
  // and the hostile asset's one trade after the first line.
  const lines = readFileSync(KRAKEN, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const out: string[] = [];
  lines.forEach((line, i) => {
    const trade = JSON.parse(line) as { base: string };
    expect(trade.base).toBe('bitcoin');
    out.push(line, JSON.stringify({ ...trade, base: 'ethereum' }));
    if (i === 0) out.push(JSON.stringify({ ...trade, base: HOSTILE }));
  });
  writeFileSync(FILE, out.join('\n') + '\n');

  for (const peer of peers) databases.set(peer, await peer.create());

  const run = spawnCoinstream(['run', '--source', `replay:${FILE}`, '--speed', 'max', ...STORES.flatMap((s) => ['--sink', s.spec()])]);
  const { code, signal } = await run.exit;
  expect(code, `the run exited with ${code} (${signal})\n--- stderr (tail) ---\n${run.stderr().slice(-4000)}`).toBe(0);
  // Every line was a trade, none late: the input is the one meant.
  expect(run.stderr()).toContain(`"accepted":${lines.length * 2 + 1},"rejected":{"malformed":0,"invalid":0,"late":0,"duplicate":0}`);
}, 120_000);

afterAll(async () => {
  killAll();
  for (const [peer, db] of databases) await peer.drop(db);
  rmSync(dir, { recursive: true, force: true });
});

/** Drops updatedAt (processing time: each store's own commit) at any depth. */
function withoutUpdatedAt(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutUpdatedAt);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).filter(([k]) => k !== 'updatedAt').map(([k, v]) => [k, withoutUpdatedAt(v)]));
  }
  return value;
}

/** Where a and b differ (numbers within 1e-9 relative), as paths; empty when they are the same. */
function differences(a: unknown, b: unknown, path = '$'): string[] {
  if (typeof a === 'number' && typeof b === 'number') {
    const scale = Math.max(Math.abs(a), Math.abs(b));
    return a === b || Math.abs(a - b) <= 1e-9 * scale ? [] : [`${path}: ${a} vs ${b}`];
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return [`${path}: ${a.length} vs ${b.length} elements`];
    return a.flatMap((x, i) => differences(x, b[i], `${path}[${i}]`));
  }
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) =>
      k in a && k in b ? differences((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`) : [`${path}.${k}: only in ${k in a ? 'the first' : 'the second'}`],
    );
  }
  return Object.is(a, b) ? [] : [`${path}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`];
}

type Row = { asset: string; windowStart: number; windowEnd: number; [k: string]: unknown };

for (const store of STORES) {
  describe(`coinstream dashboard --store ${store.kind}`, () => {
    let dashboard: Spawned;
    let base: string;
    const get = async (path: string) => {
      const res = await fetch(base + path);
      const text = await res.text();
      return { res, text, json: () => JSON.parse(text) as Record<string, unknown> };
    };

    beforeAll(async () => {
      const port = await freePort();
      dashboard = spawnCoinstream(['dashboard', '--store', store.spec(), '--port', String(port)]);
      const line = await dashboard.waitFor('stderr', /dashboard on http:\/\/[^\s"]+/);
      base = line.slice('dashboard on '.length).replace(/\/$/, '');
      expect(base).toBe(`http://127.0.0.1:${port}`);
    });

    afterAll(() => {
      if (dashboard.child.exitCode === null && dashboard.child.signalCode === null) dashboard.child.kill('SIGKILL');
    });

    it('lists the three assets, the hostile name as a plain JSON string', async () => {
      const { res, json } = await get('/api/assets');
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(json()).toEqual({ assets: [HOSTILE, 'bitcoin', 'ethereum'] });
    });

    it('serves every window and trend of bitcoin, the newest `limit` of them ascending', async () => {
      const all = await get('/api/windows?asset=bitcoin');
      expect(all.res.status).toBe(200);
      const windows = all.json().windows as Row[];
      // The Kraken hour: 60 one-minute windows, all bitcoin, ascending.
      expect(windows.length).toBeGreaterThan(50);
      expect(windows.every((w) => w.asset === 'bitcoin')).toBe(true);
      for (let i = 1; i < windows.length; i++) expect(windows[i].windowStart).toBeGreaterThan(windows[i - 1].windowStart);

      const trends = (await get('/api/trends?asset=bitcoin')).json().trends as Row[];
      expect(trends.map((t) => t.windowStart)).toEqual(windows.map((w) => w.windowStart));
      expect(trends.every((t) => t.asset === 'bitcoin')).toBe(true);

      const hostile = (await get(`/api/windows?asset=${encodeURIComponent(HOSTILE)}`)).json().windows as Row[];
      expect(hostile).toHaveLength(1);
      expect(hostile[0]).toMatchObject({ asset: HOSTILE, trades: 1 });
      answers.set(store.kind, { windows, trends, hostile });

      const last5 = (await get('/api/windows?asset=bitcoin&limit=5')).json().windows as Row[];
      expect(last5).toEqual(windows.slice(-5));
      const last5Trends = (await get('/api/trends?asset=bitcoin&limit=5')).json().trends as Row[];
      expect(last5Trends).toEqual(trends.slice(-5));

      // from/to bound the windows ([from, to)); limit then keeps the newest of those.
      const from = windows[10].windowStart;
      const to = windows[20].windowEnd;
      const between = (await get(`/api/windows?asset=bitcoin&from=${from}&to=${to}&limit=3`)).json().windows as Row[];
      expect(between).toEqual(windows.slice(18, 21));

      // Over every asset: the newest 5 (by start, then end, then asset), in asset then start order. The
      // store picks them: the dashboard no longer reads the whole range to keep five.
      const ethereum = (await get('/api/windows?asset=ethereum')).json().windows as Row[];
      const byTime = [...hostile, ...windows, ...ethereum].sort((a, b) => a.windowStart - b.windowStart || a.windowEnd - b.windowEnd || (a.asset < b.asset ? -1 : 1));
      const newest5 = byTime.slice(-5).sort((a, b) => (a.asset < b.asset ? -1 : a.asset > b.asset ? 1 : a.windowStart - b.windowStart));
      expect(newest5.map((w) => w.asset)).toEqual(['bitcoin', 'bitcoin', 'ethereum', 'ethereum', 'ethereum']);
      expect((await get('/api/windows?limit=5')).json().windows).toEqual(newest5);
    });

    it('answers a bad parameter with 400 and a message', async () => {
      for (const query of ['limit=0', 'from=abc']) {
        for (const api of ['windows', 'trends']) {
          const { res, json } = await get(`/api/${api}?asset=bitcoin&${query}`);
          expect(res.status, `${api}?${query}`).toBe(400);
          const body = json();
          expect(typeof body.error).toBe('string');
          expect(body.error as string).toMatch(query.startsWith('limit') ? /^limit: / : /^from: .*"abc"/);
        }
      }
    });

    it('serves the page with the Content-Security-Policy header', async () => {
      const { res, text } = await get('/');
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect(res.headers.get('content-security-policy')).toBe(SECURITY_HEADERS['Content-Security-Policy']);
      expect(text).toMatch(/^<!doctype html>/i);
      expect(text).toContain('<title>coinstream</title>');
      // The API carries it too.
      expect((await get('/api/assets')).res.headers.get('content-security-policy')).toBe(SECURITY_HEADERS['Content-Security-Policy']);
    });

    it("says state 'store' on /api/health", async () => {
      const { res, json } = await get('/api/health');
      expect(res.status).toBe(200);
      expect(json()).toMatchObject({ ok: true, state: 'store', sources: [{ connected: true }] });
      // A store keeps no count of accepted trades or gaps: unknown, not 0 ("accepted 0" for a full store).
      // The job's --trend-span (the default 6m) comes from its stored settings.
      expect(json()).toMatchObject({ counters: { accepted: null, gaps: null }, trendSpanMs: 360_000 });
    });

    it('stops on SIGTERM with exit code 0', async () => {
      dashboard.child.kill('SIGTERM');
      const { code, signal } = await dashboard.exit;
      expect({ code, signal }, dashboard.stderr().slice(-2000)).toEqual({ code: 0, signal: null });
    });
  });
}

describe('the stores answer alike', () => {
  it('has the same bitcoin windows and trends (and the hostile asset window) in every store', () => {
    expect([...answers.keys()].sort()).toEqual(STORES.map((s) => s.kind).sort());
    const [first, ...rest] = STORES.map((s) => s.kind);
    const reference = answers.get(first)!;
    for (const kind of rest) {
      const other = answers.get(kind)!;
      for (const part of ['windows', 'trends', 'hostile'] as const) {
        const diff = differences(withoutUpdatedAt(reference[part]), withoutUpdatedAt(other[part]));
        expect(diff, `${part}: ${first} vs ${kind}`).toEqual([]);
      }
    }
  });
});

describe('coinstream dashboard --store duckdb:MISSING', () => {
  it('exits 2 with one line, creating no file', async () => {
    const missing = join(dir, 'nowhere', 'missing.duckdb');
    const run = spawnCoinstream(['dashboard', '--store', `duckdb:${missing}`, '--port', String(await freePort())]);
    const { code } = await run.exit;
    expect(code, run.stderr()).toBe(2);
    const lines = run.stderr().split('\n').filter((l) => l.trim() !== '');
    expect(lines, run.stderr()).toHaveLength(1);
    expect(lines[0]).toContain(missing);
    expect(run.stdout()).toBe('');
    expect(existsSync(missing)).toBe(false);
  });
});
