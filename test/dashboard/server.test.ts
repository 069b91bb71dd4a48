// The dashboard's HTTP server over a fake in-memory DashboardData: the JSON API (parameters, defaults,
// bad input), the live stream (first status, coalescing, Last-Event-ID resume and reset, limits,
// unsubscribe), /metrics as Prometheus text, security headers, and the static page (no traversal).
// Real sockets and node's fetch; no fixed sleeps: every wait is for a message or a condition.
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { CoinstreamError } from '../../src/core/errors.js';
import { createLogger, silentLogger } from '../../src/core/logger.js';
import type { AssetUpdate, DashboardData, DashboardEvent, DashboardStatus, TrendResult, WindowResult } from '../../src/dashboard/contract.js';
import { parseRangeQuery, SECURITY_HEADERS, startDashboardServer, type DashboardServer, type DashboardServerOptions } from '../../src/dashboard/server.js';
import { SseHub, type SseSink } from '../../src/dashboard/sse.js';

const HOSTILE = '<img src=x onerror=alert(1)>';
const MIN = 60_000;
const T0 = Date.UTC(2024, 0, 31, 12, 0, 0);

function win(asset: string, start: number, extra: Partial<WindowResult> = {}): WindowResult {
  return {
    asset, windowStart: start, windowEnd: start + MIN, trades: 1, totalVolume: 1, totalAmount: 100, averagePrice: 100, vwap: 100,
    open: 100, high: 100, low: 100, close: 100, buyVolume: 1, sellVolume: 0, isFinal: false, updatedAt: start + MIN, ...extra,
  };
}

function trend(asset: string, start: number): TrendResult {
  return { asset, windowStart: start, windowEnd: start + MIN, vwap: 100, prevVwap: null, trend: null, avgPrice6m: 100, change6mPct: 0, windows6m: 1, isFinal: true };
}

function status(state: DashboardStatus['state'] = 'live', accepted = 0): DashboardStatus {
  return {
    state,
    sources: [{ name: 'binance', connected: state === 'live' }],
    counters: { accepted, rejected: { malformed: 0, invalid: 0, late: 0, duplicate: 0 }, gaps: 0 },
    lastCommitAt: null,
    watermark: null,
    trendSpanMs: null,
  };
}

type Q = { asset?: string; from: number; to: number; limit?: number };

class FakeData implements DashboardData {
  windowRows: WindowResult[] = [];
  trendRows: TrendResult[] = [];
  current: DashboardStatus = status();
  readonly listeners = new Set<(e: DashboardEvent) => void>();
  readonly queries: Q[] = [];
  /** Called after every subscribe and unsubscribe (what until() waits for). */
  private readonly watchers = new Set<() => void>();

  /** Resolves once `cond` holds, checked after each (un)subscription; fails after `timeoutMs`. */
  until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!cond()) return;
        clearTimeout(timer);
        this.watchers.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.watchers.delete(check);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      this.watchers.add(check);
    });
  }

  private changed(): void {
    for (const w of [...this.watchers]) w();
  }

  private select<T extends { asset: string; windowStart: number; windowEnd: number }>(rows: T[], q: Q): T[] {
    this.queries.push(q);
    const hits = rows
      .filter((r) => (q.asset === undefined || r.asset === q.asset) && r.windowStart >= q.from && r.windowEnd <= q.to)
      .sort((a, b) => a.windowStart - b.windowStart);
    return q.limit === undefined ? hits : hits.slice(-q.limit);
  }
  async assets() {
    return [...new Set(this.windowRows.map((r) => r.asset))].sort();
  }
  async windows(q: Q) {
    return this.select(this.windowRows, q);
  }
  async trends(q: Q) {
    return this.select(this.trendRows, q);
  }
  status() {
    return this.current;
  }
  subscribe(listener: (e: DashboardEvent) => void) {
    this.listeners.add(listener);
    this.changed();
    return () => {
      this.listeners.delete(listener);
      this.changed();
    };
  }
  emit(event: DashboardEvent) {
    for (const l of [...this.listeners]) l(event);
  }
  asset(update: AssetUpdate) {
    this.emit({ type: 'asset', update });
  }
  async close() {}
}

interface SseMessage {
  id?: string;
  event: string;
  data: string;
}

/** A small SSE client over fetch's body stream. */
async function openStream(url: string, headers: Record<string, string> = {}) {
  const ac = new AbortController();
  const res = await fetch(url, { headers, signal: ac.signal });
  const messages: SseMessage[] = [];
  let comments = 0;
  let ended = false;
  let wake: (() => void)[] = [];
  const notify = () => {
    const w = wake;
    wake = [];
    for (const f of w) f();
  };
  const pump = (async () => {
    if (!res.body) return;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const msg: SseMessage = { event: 'message', data: '' };
          let hasData = false;
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments++;
            else if (line.startsWith('id: ')) msg.id = line.slice(4);
            else if (line.startsWith('event: ')) msg.event = line.slice(7);
            else if (line.startsWith('data: ')) {
              msg.data += (hasData ? '\n' : '') + line.slice(6);
              hasData = true;
            }
          }
          if (hasData) messages.push(msg);
          notify();
        }
      }
    } catch (err) {
      if (!ac.signal.aborted) throw err;
    } finally {
      ended = true;
      notify();
    }
  })();
  pump.catch(() => {});
  const waitFor = async (pred: (m: SseMessage[]) => boolean, what: string, timeoutMs = 5000): Promise<void> => {
    const timer = setTimeout(notify, timeoutMs);
    const deadline = Date.now() + timeoutMs;
    try {
      while (!pred(messages)) {
        if (ended) throw new Error(`stream ended before ${what}; got ${JSON.stringify(messages)}`);
        if (Date.now() >= deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(messages)}`);
        await new Promise<void>((r) => wake.push(r));
      }
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    res,
    messages,
    comments: () => comments,
    ended: () => ended,
    waitFor,
    waitForEnd: () => waitFor(() => ended, 'the end').catch((e) => { if (!ended) throw e; }),
    close: () => ac.abort(),
  };
}

const servers: DashboardServer[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(data: DashboardData, extra: Partial<DashboardServerOptions> = {}): Promise<DashboardServer> {
  const s = await startDashboardServer({ data, host: '127.0.0.1', port: 0, logger: silentLogger, ...extra });
  servers.push(s);
  return s;
}

async function getJson(url: string): Promise<{ status: number; body: any; headers: Headers }> {
  const r = await fetch(url);
  return { status: r.status, body: await r.json(), headers: r.headers };
}

/** GET with the path sent exactly as written (fetch would normalise `..`). */
function rawGet(base: string, path: string): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

function expectSecurityHeaders(get: (name: string) => string | null | undefined) {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) expect(get(name), name).toBe(value);
  const csp = get('content-security-policy')!;
  expect(csp).not.toMatch(/unsafe-(eval|inline)/);
}

describe('the JSON API', () => {
  const data = new FakeData();
  let base: string;
  beforeAll(async () => {
    data.windowRows = [
      ...Array.from({ length: 10 }, (_, i) => win('bitcoin', T0 + i * MIN, { trades: i + 1 })),
      win('ethereum', T0),
      win(HOSTILE, T0),
    ];
    data.trendRows = [trend('bitcoin', T0), trend('bitcoin', T0 + MIN)];
    const s = await startDashboardServer({ data, host: '127.0.0.1', port: 0, logger: silentLogger });
    base = s.url;
    return () => s.close();
  });

  it('assets', async () => {
    const r = await getJson(`${base}api/assets`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ assets: [HOSTILE, 'bitcoin', 'ethereum'] });
    expect(r.headers.get('cache-control')).toBe('no-store');
  });

  it('windows and trends with the defaults: every asset, no time bounds, limit 1000', async () => {
    data.queries.length = 0;
    const w = await getJson(`${base}api/windows`);
    expect(w.status).toBe(200);
    expect(w.body.windows).toHaveLength(12);
    const t = await getJson(`${base}api/trends`);
    expect(t.body).toEqual({ trends: data.trendRows });
    expect(data.queries).toEqual([
      { from: -Infinity, to: Infinity, limit: 1000 },
      { from: -Infinity, to: Infinity, limit: 1000 },
    ]);
  });

  it('asset, from and to as epoch ms or ISO-8601 with a zone, and limit: the newest rows, ascending', async () => {
    data.queries.length = 0;
    const from = new Date(T0 + 2 * MIN).toISOString();
    const r = await getJson(`${base}api/windows?asset=bitcoin&from=${encodeURIComponent(from)}&to=${T0 + 8 * MIN}&limit=3`);
    expect(r.status).toBe(200);
    expect(r.body.windows.map((x: WindowResult) => x.trades)).toEqual([6, 7, 8]);
    expect(data.queries[0]).toEqual({ asset: 'bitcoin', from: T0 + 2 * MIN, to: T0 + 8 * MIN, limit: 3 });
    const offset = await getJson(`${base}api/windows?asset=bitcoin&from=2024-01-31T13:02:00%2B01:00&limit=5000`);
    expect(offset.body.windows.map((x: WindowResult) => x.trades)).toEqual([3, 4, 5, 6, 7, 8, 9, 10]);
    const dateOnly = await getJson(`${base}api/windows?asset=bitcoin&from=2024-01-31&to=2024-02-01&limit=1`);
    expect(dateOnly.body.windows.map((x: WindowResult) => x.trades)).toEqual([10]);
  });

  it('an empty range, a range with nothing in it and an unknown asset are empty lists, not errors', async () => {
    for (const q of ['asset=dogecoin', `from=${T0 - 10 * MIN}&to=${T0 - 5 * MIN}`, `from=${T0 + 30_000}&to=${T0 + 60_000}`]) {
      const r = await getJson(`${base}api/windows?${q}`);
      expect(r.status, q).toBe(200);
      expect(r.body, q).toEqual({ windows: [] });
    }
    expect((await getJson(`${base}api/trends?asset=dogecoin`)).body).toEqual({ trends: [] });
  });

  it.each([
    ['limit=0', /limit: send a whole number from 1 to 5000/],
    ['limit=5001', /limit: send a whole number from 1 to 5000.*"5001"/],
    ['limit=1.5', /limit/],
    ['limit=ten', /limit/],
    ['limit=', /limit/],
    ['from=yesterday', /from: "yesterday" is not a time; send epoch milliseconds .* or an ISO-8601 time/],
    ['to=2024-01-31T12:00:00', /to: .* has no time zone; add Z/],
    ['from=2024-02-30', /from: "2024-02-30" is not a valid date/],
    // With a time and zone too (V8 rolled it over into March, 200).
    ['from=2019-02-30T00:00:00Z', /from: "2019-02-30T00:00:00Z" is not a valid date/],
    ['to=2019-04-31T23:00:00%2B02:00', /to: "2019-04-31T23:00:00\+02:00" is not a valid date/],
    ['from=2024-13-01T00:00:00Z', /from: .* is not a valid date/],
    ['from=99999999999999999', /from: .*(out of range|not a time)/],
    [`from=${T0}&to=${T0}`, /from must be before to/],
    [`from=${T0 + 1}&to=${T0}`, /from must be before to/],
    ['asset=', /asset: send an asset id of 1 to 200 characters/],
    [`asset=${'a'.repeat(201)}`, /asset: send an asset id of 1 to 200 characters/],
    ['asset=bitcoin&asset=ethereum', /asset: give it once/],
    ['assets=bitcoin', /unknown parameter "assets"; send asset, from, to, limit/],
    ['limit=0&from=x', /from: .*; limit: /],
  ])('bad input %s -> 400 with what to send', async (q, message) => {
    for (const path of ['windows', 'trends']) {
      const r = await getJson(`${base}api/${path}?${q}`);
      expect(r.status, `${path}?${q}`).toBe(400);
      expect(Object.keys(r.body)).toEqual(['error']);
      expect(r.body.error).toMatch(message);
    }
  });

  it('limit bounds 1 and 5000 are accepted', async () => {
    expect((await getJson(`${base}api/windows?limit=1`)).body.windows).toHaveLength(1);
    expect((await getJson(`${base}api/windows?limit=5000`)).status).toBe(200);
  });

  it('a hostile asset name travels as a JSON string, never as markup', async () => {
    const r = await fetch(`${base}api/windows?asset=${encodeURIComponent(HOSTILE)}`);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    const text = await r.text();
    expect(text).toContain(JSON.stringify(HOSTILE));
    expect(text).not.toContain('&lt;');
    expect(JSON.parse(text).windows[0].asset).toBe(HOSTILE);
  });

  it('health: ok with the status; 503 and ok:false while reconnecting', async () => {
    data.current = status('live', 42);
    const ok = await getJson(`${base}api/health`);
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ ok: true, ...status('live', 42) });
    data.current = status('reconnecting', 42);
    const bad = await getJson(`${base}api/health`);
    expect(bad.status).toBe(503);
    expect(bad.body).toEqual({ ok: false, ...status('reconnecting', 42) });
    data.current = status();
  });

  it('unknown paths and methods are 404 JSON; a URL that cannot be decoded is 400; all with the security headers', async () => {
    for (const [path, code] of [['/api/nope', 404], ['/%', 400], ['/api/windows/x', 404]] as const) {
      const r = await rawGet(base, path);
      expect(r.status, path).toBe(code);
      expect(JSON.parse(r.body).error).toEqual(expect.any(String));
      expectSecurityHeaders((n) => r.headers[n.toLowerCase()] as string | undefined);
    }
    const post = await fetch(`${base}api/assets`, { method: 'POST' });
    expect(post.status).toBe(404);
  });

  it('BigInt from a store goes out as a JSON number; a failing store is a 500 without its internals', async () => {
    const big = new FakeData();
    big.windowRows = [{ ...win('bitcoin', T0), trades: 7n as unknown as number }];
    const s = await start(big);
    expect((await getJson(`${s.url}api/windows`)).body.windows[0].trades).toBe(7);
    big.windows = async () => {
      throw new Error('secret internals');
    };
    const r = await getJson(`${s.url}api/windows`);
    expect(r.status).toBe(500);
    expect(JSON.stringify(r.body)).not.toContain('secret');
  });
});

describe('parseRangeQuery', () => {
  it('returns numbers, never strings', () => {
    expect(parseRangeQuery({ from: '0', to: '1000', limit: '7', asset: 'x' })).toEqual({ asset: 'x', from: 0, to: 1000, limit: 7 });
    expect(parseRangeQuery({ from: '-5' })).toEqual({ from: -5, to: Infinity, limit: 1000 });
    expect(parseRangeQuery(undefined)).toEqual({ from: -Infinity, to: Infinity, limit: 1000 });
  });
});

describe('the static page', () => {
  let web: string;
  beforeAll(() => {
    const root = mkdtempSync(join(tmpdir(), 'coinstream-web-'));
    dirs.push(root);
    web = join(root, 'web');
    mkdirSync(join(web, 'sub'), { recursive: true });
    writeFileSync(join(root, 'package.json'), '{"secret":"OUTSIDE-CONTENT"}');
    writeFileSync(join(web, 'index.html'), '<!doctype html><title>t</title><script type="module" src="/app.js"></script>');
    writeFileSync(join(web, 'app.js'), 'console.log(1)');
    writeFileSync(join(web, 'style.css'), 'body{}');
    writeFileSync(join(web, 'app.js.map'), '{}');
    writeFileSync(join(web, '.env'), 'SECRET=DOTFILE-CONTENT');
    writeFileSync(join(web, 'sub', 'inner.txt'), 'INNER-CONTENT');
  });

  it('serves the files of the directory with their content types and the security headers', async () => {
    const s = await start(new FakeData(), { staticDir: web });
    for (const [path, type, body] of [
      ['', 'text/html; charset=utf-8', '<!doctype html>'],
      ['index.html', 'text/html; charset=utf-8', '<!doctype html>'],
      ['app.js', 'text/javascript; charset=utf-8', 'console.log(1)'],
      ['style.css', 'text/css; charset=utf-8', 'body{}'],
      ['app.js.map', 'application/json; charset=utf-8', '{}'],
    ]) {
      const r = await fetch(s.url + path);
      expect(r.status, path).toBe(200);
      expect(r.headers.get('content-type'), path).toBe(type);
      expect(await r.text(), path).toContain(body);
      expectSecurityHeaders((n) => r.headers.get(n));
    }
  });

  it('refuses traversal, subdirectories, dotfiles and names not in the directory', async () => {
    const s = await start(new FakeData(), { staticDir: web });
    for (const path of ['/..%2fpackage.json', '/../package.json', '/%2e%2e%2fpackage.json', '/%2e%2e/package.json', '/..%5cpackage.json', '/sub%2finner.txt', '/sub/inner.txt', '/sub', '/.env', '/%2eenv', '/package.json', '/app.js%00', '/..']) {
      const r = await rawGet(s.url, path);
      expect([400, 404], path).toContain(r.status);
      expect(r.body, path).not.toMatch(/-CONTENT/);
    }
  });

  it('without a built page, / is 503 and says to run npm run build', async () => {
    const s = await start(new FakeData(), { staticDir: join(web, 'missing') });
    const r = await fetch(s.url);
    expect(r.status).toBe(503);
    expect(await r.text()).toMatch(/npm run build/);
    expectSecurityHeaders((n) => r.headers.get(n));
    expect((await fetch(`${s.url}app.js`)).status).toBe(404);
  });
});

describe('the live stream', () => {
  it('starts with the status and then forwards asset and status events, with increasing ids', async () => {
    const data = new FakeData();
    data.current = status('live', 5);
    const s = await start(data);
    const c = await openStream(`${s.url}api/stream`);
    expect(c.res.status).toBe(200);
    expect(c.res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(c.res.headers.get('cache-control')).toBe('no-cache');
    expect(c.res.headers.get('x-accel-buffering')).toBe('no');
    expectSecurityHeaders((n) => c.res.headers.get(n));
    await c.waitFor((m) => m.length >= 1, 'the first status');
    expect(c.messages[0].event).toBe('status');
    expect(JSON.parse(c.messages[0].data)).toEqual(status('live', 5));
    await data.until(() => data.listeners.size === 1, 'the subscription');
    data.asset({ asset: 'bitcoin', price: { priceUsd: 1, receivedAt: 2 } });
    data.asset({ asset: HOSTILE, tradesPerSecond: 3 });
    data.emit({ type: 'status', status: status('reconnecting', 6) });
    await c.waitFor((m) => m.length >= 4, 'three more');
    expect(c.messages.slice(1).map((m) => m.event)).toEqual(['asset', 'asset', 'status']);
    expect(JSON.parse(c.messages[2].data)).toEqual({ asset: HOSTILE, tradesPerSecond: 3 });
    const ids = c.messages.map((m) => Number(m.id));
    expect(ids.every((id) => Number.isSafeInteger(id))).toBe(true);
    expect(ids.slice(1)).toEqual([ids[0] + 1, ids[0] + 2, ids[0] + 3]);
    c.close();
  });

  it('coalesces: 50 quick updates of one asset become a few messages, the last with the newest values', async () => {
    const data = new FakeData();
    const s = await start(data);
    const c = await openStream(`${s.url}api/stream`);
    await data.until(() => data.listeners.size === 1, 'the subscription');
    for (let i = 1; i <= 50; i++) {
      data.asset({
        asset: 'bitcoin',
        windows: [win('bitcoin', T0 + (i % 3) * MIN, { trades: i })],
        trends: i % 10 === 0 ? [trend('bitcoin', T0 + i * MIN)] : undefined,
        price: { priceUsd: 1000 + i, receivedAt: i },
        tradesPerSecond: i,
      });
      data.asset({ asset: 'ethereum', tradesPerSecond: i });
    }
    const isNewest = (m: SseMessage) => m.event === 'asset' && JSON.parse(m.data).asset === 'bitcoin' && JSON.parse(m.data).tradesPerSecond === 50;
    await c.waitFor((m) => m.some(isNewest), 'the newest bitcoin values');
    await c.waitFor((m) => m.some((x) => x.event === 'asset' && JSON.parse(x.data).tradesPerSecond === 50 && JSON.parse(x.data).asset === 'ethereum'), 'the newest ethereum');
    const bitcoin = c.messages.filter((m) => m.event === 'asset' && JSON.parse(m.data).asset === 'bitcoin');
    expect(bitcoin.length).toBeLessThanOrEqual(3);
    const last = JSON.parse(bitcoin.at(-1)!.data) as AssetUpdate;
    // The first update went out at once; the rest were merged: the newest price, and the earliest
    // arrival among the updates merged into this message (2 when it holds all of 2..50).
    expect(last.price).toMatchObject({ priceUsd: 1050, receivedAt: 50 });
    expect(last.price!.oldestReceivedAt).toBeGreaterThanOrEqual(2);
    expect(last.price!.oldestReceivedAt).toBeLessThanOrEqual(50);
    if (bitcoin.length === 2) expect(last.price!.oldestReceivedAt).toBe(2);
    // windows merged by (start, end), each the newest version; trends merged the same way
    const seen = new Map<number, number>();
    for (const m of bitcoin) for (const w of (JSON.parse(m.data) as AssetUpdate).windows ?? []) seen.set(w.windowStart, w.trades);
    expect([...seen.entries()].sort((a, b) => a[0] - b[0])).toEqual([[T0, 48], [T0 + MIN, 49], [T0 + 2 * MIN, 50]]);
    expect(last.windows!.map((w) => w.windowStart)).toEqual([...last.windows!.map((w) => w.windowStart)].sort((a, b) => a - b));
    const trends = bitcoin.flatMap((m) => (JSON.parse(m.data) as AssetUpdate).trends ?? []).map((t) => t.windowStart);
    expect(new Set(trends)).toEqual(new Set([10, 20, 30, 40, 50].map((i) => T0 + i * MIN)));
    c.close();
  });

  it('a client that reconnects with Last-Event-ID gets what it missed, also when it was the only one', async () => {
    const data = new FakeData();
    const s = await start(data);
    const a = await openStream(`${s.url}api/stream`);
    await data.until(() => data.listeners.size === 1, 'the subscription');
    data.asset({ asset: 'a1', tradesPerSecond: 1 });
    data.asset({ asset: 'a2', tradesPerSecond: 2 });
    await a.waitFor((m) => m.length === 3, 'two assets');
    const seenId = a.messages[1].id!; // a1 seen, a2 missed
    a.close();
    await a.waitForEnd();
    // nobody connected: updates go on into the ring for a while (the idle grace period)
    data.asset({ asset: 'a3', tradesPerSecond: 3 });
    const b = await openStream(`${s.url}api/stream`, { 'Last-Event-ID': seenId });
    await b.waitFor((m) => m.length === 3, 'status and the two missed');
    expect(b.messages.map((m) => m.event)).toEqual(['status', 'asset', 'asset']);
    expect(b.messages.slice(1).map((m) => JSON.parse(m.data).asset)).toEqual(['a2', 'a3']);
    expect(b.messages[0].id).toBe(seenId);
    expect(Number(b.messages[2].id)).toBe(Number(seenId) + 2);
    // and goes on live
    data.asset({ asset: 'a4' });
    await b.waitFor((m) => m.length === 4, 'a live one');
    expect(Number(b.messages[3].id)).toBe(Number(seenId) + 3);
    b.close();
  });

  it('an id older than the ring, unknown or from another run gets reset', async () => {
    const data = new FakeData();
    const s = await start(data, { stream: { ringSize: 3 } });
    const a = await openStream(`${s.url}api/stream`);
    await data.until(() => data.listeners.size === 1, 'the subscription');
    for (let i = 0; i < 6; i++) data.asset({ asset: `x${i}` });
    await a.waitFor((m) => m.length === 7, 'six assets');
    const ids = a.messages.map((m) => m.id!);
    // still in the ring: the last three (ids[3] is the one before them)
    const ok = await openStream(`${s.url}api/stream`, { 'Last-Event-ID': ids[3] });
    await ok.waitFor((m) => m.length === 4, 'resume');
    expect(ok.messages.slice(1).map((m) => JSON.parse(m.data).asset)).toEqual(['x3', 'x4', 'x5']);
    for (const stale of [ids[2], ids[0], '0', 'garbage', String(Number(ids[6]) + 5)]) {
      const c = await openStream(`${s.url}api/stream`, { 'Last-Event-ID': stale });
      await c.waitFor((m) => m.length === 2, `reset for ${stale}`);
      expect(c.messages.map((m) => m.event), stale).toEqual(['status', 'reset']);
      expect(c.messages[1].data).toBe('{}');
      expect(c.messages[1].id).toBe(ids[6]);
      c.close();
    }
    a.close();
    ok.close();
  });

  it('at most maxClients streams; beyond that 503 with a JSON error', async () => {
    const data = new FakeData();
    // The server's debug lines say when it has let a stream go (its slot free again).
    let closes = 0;
    const waiting: (() => void)[] = [];
    const output = {
      write(line: string) {
        if (JSON.parse(line).msg !== 'live stream closed') return;
        closes++;
        for (const resolve of waiting.splice(0)) resolve();
      },
    };
    const s = await start(data, { maxClients: 2, logger: createLogger({ level: 'debug', format: 'json', output }) });
    const a = await openStream(`${s.url}api/stream`);
    const b = await openStream(`${s.url}api/stream`);
    await a.waitFor((m) => m.length === 1, 'a');
    await b.waitFor((m) => m.length === 1, 'b');
    const r = await fetch(`${s.url}api/stream`);
    expect(r.status).toBe(503);
    expect((await r.json()).error).toMatch(/too many live streams open \(2\)/);
    expectSecurityHeaders((n) => r.headers.get(n));
    a.close();
    await a.waitForEnd();
    // the slot is freed once the server saw the close
    if (closes === 0) await new Promise<void>((r) => waiting.push(r));
    const c = await openStream(`${s.url}api/stream`);
    expect(c.res.status).toBe(200);
    await c.waitFor((m) => m.length === 1, 'c');
    b.close();
    c.close();
  });

  it('a client going away unsubscribes (no grace period) and close() ends open streams', async () => {
    const data = new FakeData();
    const s = await start(data, { stream: { idleUnsubscribeMs: 0 } });
    const a = await openStream(`${s.url}api/stream`);
    const b = await openStream(`${s.url}api/stream`);
    await a.waitFor((m) => m.length === 1, 'a');
    await b.waitFor((m) => m.length === 1, 'b');
    expect(data.listeners.size).toBe(1); // one subscription for every client
    a.close();
    b.close();
    await data.until(() => data.listeners.size === 0, 'the unsubscribe');
    const c = await openStream(`${s.url}api/stream`);
    await c.waitFor((m) => m.length === 1, 'c');
    expect(data.listeners.size).toBe(1);
    await s.close();
    await c.waitForEnd();
    expect(data.listeners.size).toBe(0);
  });

  it('with a grace period the subscription outlives the last client, then ends and a resume gets reset', async () => {
    const data = new FakeData();
    const s = await start(data, { stream: { idleUnsubscribeMs: 50 } });
    const a = await openStream(`${s.url}api/stream`);
    await a.waitFor((m) => m.length === 1, 'a');
    await data.until(() => data.listeners.size === 1, 'the subscription');
    data.asset({ asset: 'a1' });
    await a.waitFor((m) => m.length === 2, 'a1');
    const id = a.messages[1].id!;
    a.close();
    await data.until(() => data.listeners.size === 0, 'the unsubscribe after the grace period');
    // what happened while nobody listened is unknown: reset
    const b = await openStream(`${s.url}api/stream`, { 'Last-Event-ID': id });
    await b.waitFor((m) => m.length === 2, 'reset');
    expect(b.messages.map((m) => m.event)).toEqual(['status', 'reset']);
    b.close();
  });
});

describe('SseHub in virtual time', () => {
  class Sink implements SseSink {
    text = '';
    ended = false;
    destroyed = false;
    writableLength = 0;
    write(chunk: string) {
      this.text += chunk;
      return true;
    }
    end() {
      this.ended = true;
    }
    destroy() {
      this.destroyed = true;
    }
    events() {
      return this.text.split('\n').filter((l) => l.startsWith('event: ')).map((l) => l.slice(7));
    }
  }

  it('one asset message per asset per 200 ms (first at once), one status per second, a ping every 15 s', () => {
    const clock = new ManualClock(T0);
    const data = new FakeData();
    const hub = new SseHub(data, { clock });
    const sink = new Sink();
    hub.connect(sink);
    expect(hub.currentId).toBe(T0 * 1000);
    data.asset({ asset: 'btc', tradesPerSecond: 1 });
    expect(sink.events()).toEqual(['status', 'asset']);
    clock.advance(50);
    data.asset({ asset: 'btc', tradesPerSecond: 2 });
    data.asset({ asset: 'btc', tradesPerSecond: 3 });
    clock.advance(149);
    expect(sink.events()).toEqual(['status', 'asset']);
    clock.advance(1);
    expect(sink.events()).toEqual(['status', 'asset', 'asset']);
    expect(sink.text.trimEnd().split('\n').at(-1)).toBe('data: {"asset":"btc","tradesPerSecond":3}');
    clock.advance(1000); // quiet: nothing pending, nothing sent
    expect(sink.events()).toHaveLength(3);
    data.asset({ asset: 'btc', tradesPerSecond: 4 }); // quiet for > 200 ms: at once
    expect(sink.events()).toHaveLength(4);

    data.emit({ type: 'status', status: status('live', 1) });
    data.emit({ type: 'status', status: status('live', 2) });
    expect(sink.events().filter((e) => e === 'status')).toHaveLength(2);
    clock.advance(999);
    expect(sink.events().filter((e) => e === 'status')).toHaveLength(2);
    clock.advance(1);
    expect(sink.events().filter((e) => e === 'status')).toHaveLength(3);
    expect(sink.text).toContain('"accepted":2');

    const pings = () => sink.text.split('\n').filter((l) => l === ': ping').length;
    const before = pings();
    clock.advance(15_000);
    expect(pings()).toBe(before + 1);
    hub.close();
    expect(sink.ended).toBe(true);
    expect(data.listeners.size).toBe(0);
  });

  it('drops a client that stops reading instead of buffering without bound', () => {
    const clock = new ManualClock(T0);
    const data = new FakeData();
    let slow = 0;
    const hub = new SseHub(data, { clock, maxBufferedBytes: 1000, onSlowClient: () => slow++, idleUnsubscribeMs: 0 });
    const fast = new Sink();
    const stuck = new Sink();
    hub.connect(fast);
    hub.connect(stuck);
    stuck.writableLength = 5000;
    data.asset({ asset: 'btc' });
    expect(stuck.destroyed).toBe(true);
    expect(slow).toBe(1);
    expect(hub.clientCount).toBe(1);
    expect(fast.events()).toEqual(['status', 'asset']);
    hub.close();
  });

  it('an event emitted from inside subscribe() comes after the first status', () => {
    const data = new FakeData();
    const subscribe = data.subscribe.bind(data);
    data.subscribe = (l) => {
      const off = subscribe(l);
      l({ type: 'asset', update: { asset: 'now' } });
      return off;
    };
    const hub = new SseHub(data, { clock: new ManualClock(T0) });
    const sink = new Sink();
    hub.connect(sink);
    expect(sink.events()).toEqual(['status', 'asset']);
    hub.close();
  });
});

/** Prometheus text exposition format 0.0.4, line by line. */
function checkPrometheusText(text: string): string[] {
  const problems: string[] = [];
  const name = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const labelValue = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
  const labels = `\\{(?:[a-zA-Z_][a-zA-Z0-9_]*=${labelValue}(?:,[a-zA-Z_][a-zA-Z0-9_]*=${labelValue})*,?)?\\}`;
  const value = '(?:[-+]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][-+]?\\d+)?|[-+]?Inf|NaN)';
  const sample = new RegExp(`^(${name})(?:${labels})? ${value}(?: -?\\d+)?$`);
  const help = new RegExp(`^# HELP ${name} .*$`);
  const type = new RegExp(`^# TYPE ${name} (counter|gauge|histogram|summary|untyped)$`);
  const typed = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) {
      if (!help.test(line)) problems.push(`bad HELP: ${line}`);
    } else if (line.startsWith('# TYPE ')) {
      if (!type.test(line)) problems.push(`bad TYPE: ${line}`);
      else typed.set(line.split(' ')[2], line.split(' ')[3]);
    } else if (line.startsWith('#')) {
      continue;
    } else {
      const m = sample.exec(line);
      if (!m) problems.push(`bad sample: ${line}`);
      else {
        const base = m[1].replace(/_(bucket|sum|count|total)$/, '');
        if (!typed.has(m[1]) && !typed.has(base)) problems.push(`sample without TYPE: ${line}`);
      }
    }
  }
  return problems;
}

describe('/metrics', () => {
  it('serves a prom-client registry as Prometheus text', async () => {
    const registry = new Registry();
    const c = new Counter({ name: 'test_things_total', help: 'Things, with "quotes" and a \\ backslash', labelNames: ['feed'], registers: [registry] });
    c.inc({ feed: 'binance' }, 3);
    c.inc({ feed: 'we"ird\\name\nline' });
    new Gauge({ name: 'test_level', help: 'A level', registers: [registry] }).set(-1.5e-7);
    new Histogram({ name: 'test_seconds', help: 'Durations', buckets: [0.1, 1], registers: [registry] }).observe(0.5);
    const s = await start(new FakeData(), { metrics: registry });
    const r = await fetch(`${s.url}metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe(registry.contentType);
    expectSecurityHeaders((n) => r.headers.get(n));
    const text = await r.text();
    expect(checkPrometheusText(text)).toEqual([]);
    expect(text).toContain('test_things_total{feed="binance"} 3');
    expect(text).toContain('test_seconds_bucket{le="+Inf"} 1');
    // the checker does catch broken text
    expect(checkPrometheusText('foo{a="b} 1\n# TYPE x countr\nbar 1 2 3')).toHaveLength(3);
  });

  it('is 404 without a registry', async () => {
    const s = await start(new FakeData());
    const r = await getJson(`${s.url}metrics`);
    expect(r.status).toBe(404);
    expect(r.body.error).toMatch(/no metrics/);
  });
});

describe('binding', () => {
  it('port 0 gives a free port, the url names it, and one info line says where', async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'info', format: 'json', output: { write: (l) => lines.push(l) } });
    const s = await start(new FakeData(), { logger });
    expect(s.port).toBeGreaterThan(0);
    expect(s.url).toBe(`http://127.0.0.1:${s.port}/`);
    const msgs = lines.map((l) => JSON.parse(l).msg as string);
    expect(msgs).toEqual([`dashboard on http://127.0.0.1:${s.port}/`]);
    await fetch(`${s.url}api/assets`);
    expect(lines).toHaveLength(1); // no per-request lines
  });

  it('a port in use is PORT_IN_USE with what to do', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const err = await startDashboardServer({ data: new FakeData(), host: '127.0.0.1', port, logger: silentLogger }).then(
        (s) => {
          servers.push(s);
          return null;
        },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CoinstreamError);
      expect((err as CoinstreamError).code).toBe('PORT_IN_USE');
      expect((err as Error).message).toMatch(new RegExp(`^port ${port} on 127\\.0\\.0\\.1 is in use: .*; choose another --port \\(0 picks a free one\\)$`));
    } finally {
      blocker.close();
    }
  });
});

describe('DNS rebinding', () => {
  it('bound to loopback, answers only requests for a loopback host name', async () => {
    const { request } = await import('node:http');
    const data = new FakeData();
    const s = await start(data);
    const get = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request(`${s.url}api/assets`, { headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    expect(await get(`127.0.0.1:${s.port}`)).toBe(200);
    expect(await get(`localhost:${s.port}`)).toBe(200);
    expect(await get(`evil.example:${s.port}`)).toBe(403);
  });

  it('bound to another address of 127.0.0.0/8 (all of it loopback), checks Host headers as well', async () => {
    const { request } = await import('node:http');
    const s = await start(new FakeData(), { host: '127.0.0.2' });
    const get = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request(`http://127.0.0.2:${s.port}/api/assets`, { headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    expect(await get(`127.0.0.2:${s.port}`)).toBe(200);
    expect(await get(`attacker.example:${s.port}`)).toBe(403);
  });
});
