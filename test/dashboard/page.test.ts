// The dashboard page (src/dashboard/web, bundled by scripts/build-web.mjs) in headless Debian Chromium,
// driven by playwright-core, against a small node:http server of this test's own: the built files under
// the dashboard's real Content-Security-Policy, fake /api/* JSON, and an SSE stream the test writes to.
// Without /usr/bin/chromium the tests skip with a printed reason (fail where COINSTREAM_REQUIRE_SERVICES=1).
// Screenshots go to test-artifacts/.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AssetUpdate, DashboardStatus } from '../../src/dashboard/contract.js';
import type { TrendResult, WindowResult } from '../../src/engine/contract.js';

const REQUIRE = process.env.COINSTREAM_REQUIRE_SERVICES === '1';
const CHROMIUM = process.env.COINSTREAM_CHROMIUM ?? '/usr/bin/chromium';
const ROOT = resolve(import.meta.dirname, '../..');
const ARTIFACTS = join(ROOT, 'test-artifacts');
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

const HOSTILE = '<img src=x onerror=alert(1)>';
const FEW = ['bitcoin', 'ethereum', HOSTILE];
const MANY = ['bitcoin', 'cardano', 'dogecoin', 'ethereum', 'litecoin', 'solana', 'tron'];
const MINUTE = 60_000;
const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);
const N_WINDOWS = 30;

const missing = existsSync(CHROMIUM) ? null : `${CHROMIUM} is missing (apt-get install -y chromium)`;
if (missing && !REQUIRE) console.warn(`skipping the dashboard page tests: ${missing}`);

// ------------------------------------------------------------------------------- fake data

function basePrice(asset: string): number {
  return asset === 'bitcoin' ? 36_000 : asset === 'ethereum' ? 1_900 : asset === 'dogecoin' ? 0.0712 : 42.5;
}

function windowAt(asset: string, i: number, isFinal = true): WindowResult {
  const p = basePrice(asset) * (1 + Math.sin(i / 4) * 0.01);
  const open = p;
  const close = p * (1 + (i % 3 === 0 ? -0.002 : 0.003));
  const buyVolume = 1 + (i % 5);
  const sellVolume = 1 + ((i * 7) % 5);
  const totalVolume = buyVolume + sellVolume;
  const vwap = (open + close) / 2;
  return {
    asset,
    windowStart: T0 + i * MINUTE,
    windowEnd: T0 + (i + 1) * MINUTE,
    trades: 10 + i,
    totalVolume,
    totalAmount: totalVolume * vwap,
    averagePrice: vwap,
    vwap,
    open,
    high: Math.max(open, close) * 1.001,
    low: Math.min(open, close) * 0.999,
    close,
    buyVolume,
    sellVolume,
    isFinal,
    updatedAt: T0 + (i + 1) * MINUTE,
  };
}

function trendAt(asset: string, i: number, trend: TrendResult['trend'], change6mPct: number): TrendResult {
  const w = windowAt(asset, i);
  return {
    asset,
    windowStart: w.windowStart,
    windowEnd: w.windowEnd,
    vwap: w.vwap,
    prevVwap: windowAt(asset, i - 1).vwap,
    trend,
    avgPrice6m: w.vwap,
    change6mPct,
    windows6m: 6,
    isFinal: true,
  };
}

/** The trend each asset's newest TrendResult says. */
function trendOf(asset: string): { trend: TrendResult['trend']; pct: number } {
  if (asset === 'bitcoin') return { trend: 'up', pct: 1.2345 };
  if (asset === 'ethereum') return { trend: 'down', pct: -0.5 };
  return { trend: 'flat', pct: 0 };
}

const status: DashboardStatus = {
  state: 'live',
  sources: [
    { name: 'binance:btcusdt,ethusdt', connected: true },
    { name: 'coinbase:BTC-USD', connected: false },
  ],
  counters: { accepted: 123_456, rejected: { malformed: 2, invalid: 1, late: 7, duplicate: 0 }, gaps: 3 },
  lastCommitAt: T0 + N_WINDOWS * MINUTE,
  watermark: T0 + (N_WINDOWS - 5) * MINUTE,
  // Not the default 6m: the badge must say the run's span (it had "6m" written in).
  trendSpanMs: 30 * MINUTE,
};

// ------------------------------------------------------------------------------- fake server

interface Fake {
  url: string;
  server: Server;
  streams: Set<ServerResponse>;
  /** Requests per API path. */
  hits: Map<string, number>;
  /** While true, /api/stream answers 503 (EventSource gives up on that; the page must retry itself). */
  refuseStream: boolean;
  /** Stream requests refused so far. */
  refused: number;
  send(event: string, data: unknown): void;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
};

async function startFake(webDir: string): Promise<Fake> {
  const streams = new Set<ServerResponse>();
  const hits = new Map<string, number>();
  let eventId = 0;
  const json = (res: ServerResponse, body: unknown) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-security-policy': CSP, 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url ?? '/', 'http://x');
    // `/many/...` serves the same page with seven assets (the picker layout), through relative URLs.
    const many = u.pathname.startsWith('/many/');
    const path = many ? u.pathname.slice('/many'.length) : u.pathname;
    const assets = many ? MANY : FEW;
    const asset = u.searchParams.get('asset') ?? '';
    if (path.startsWith('/api/')) hits.set(path, (hits.get(path) ?? 0) + 1);
    switch (path) {
      case '/api/assets':
        return json(res, { assets });
      case '/api/windows':
        return json(res, { windows: assets.includes(asset) ? Array.from({ length: N_WINDOWS }, (_, i) => windowAt(asset, i, i < N_WINDOWS - 1)) : [] });
      case '/api/trends': {
        if (!assets.includes(asset)) return json(res, { trends: [] });
        const { trend, pct } = trendOf(asset);
        // Oldest first, as the API answers; the newest one is what the badge shows.
        return json(res, { trends: [trendAt(asset, N_WINDOWS - 3, 'down', -9.99), trendAt(asset, N_WINDOWS - 2, 'up', 9.99), trendAt(asset, N_WINDOWS - 1, trend, pct)] });
      }
      case '/api/health':
        return json(res, { ok: true, ...status });
      case '/api/stream': {
        if (fake.refuseStream) {
          fake.refused++;
          res.writeHead(503, { 'content-type': 'application/json' });
          res.end('{"error":"not now"}');
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'content-security-policy': CSP });
        res.write(`retry: 500\nid: ${++eventId}\nevent: status\ndata: ${JSON.stringify(status)}\n\n`);
        streams.add(res);
        req.on('close', () => streams.delete(res));
        return;
      }
    }
    const file = path === '/' ? 'index.html' : path.slice(1);
    if (!/^[\w.-]+$/.test(file) || !existsSync(join(webDir, file))) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-security-policy': CSP });
    res.end(readFileSync(join(webDir, file)));
  };
  const server = createServer((req, res) => handle(req, res));
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  const fake: Fake = {
    url: `http://127.0.0.1:${port}`,
    server,
    streams,
    hits,
    refuseStream: false,
    refused: 0,
    send(event, data) {
      const frame = `id: ${++eventId}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
      for (const s of streams) s.write(frame);
    },
  };
  return fake;
}

// ------------------------------------------------------------------------------- the tests

// esbuild only strips types, and the root tsconfig leaves the page out (it needs the DOM lib): check it here.
it('the page type-checks (src/dashboard/web/tsconfig.json)', async () => {
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  const run = await promisify(execFile)(process.execPath, [tsc, '--noEmit', '-p', 'src/dashboard/web'], { cwd: ROOT }).catch(
    (err: { stdout?: string; stderr?: string }) => ({ stdout: `${err.stdout ?? ''}${err.stderr ?? ''}` || String(err), failed: true }),
  );
  expect('failed' in run ? run.stdout : '').toBe('');
});

describe.skipIf(missing !== null && !REQUIRE)('dashboard page in Chromium', () => {
  let webDir: string;
  let fake: Fake;
  let browser: Browser;
  let context: BrowserContext | null = null;
  let problems: string[] = [];

  beforeAll(async () => {
    if (missing) throw new Error(`Chromium is needed (COINSTREAM_REQUIRE_SERVICES=1) but ${missing}`);
    webDir = mkdtempSync(join(tmpdir(), 'coinstream-web-'));
    // Build the page from the sources into a folder of its own (dist/web may belong to a running server).
    await promisify(execFile)(process.execPath, [join(ROOT, 'scripts/build-web.mjs'), '--outdir', webDir], { cwd: ROOT });
    fake = await startFake(webDir);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    mkdirSync(ARTIFACTS, { recursive: true });
  });

  afterEach(async () => {
    await context?.close();
    context = null;
  });

  afterAll(async () => {
    await browser?.close();
    for (const s of fake?.streams ?? []) s.destroy();
    await new Promise((ok) => (fake ? fake.server.close(ok) : ok(undefined)));
    if (webDir) rmSync(webDir, { recursive: true, force: true });
  });

  /** A fresh page that records page errors, console errors and warnings (CSP violations are logged as errors) and dialogs. */
  async function open(path: string, viewport = { width: 1280, height: 800 }): Promise<Page> {
    problems = [];
    context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`console.${msg.type()}: ${msg.text()}`);
    });
    page.on('dialog', (d) => {
      problems.push(`dialog: ${d.message()}`);
      void d.dismiss();
    });
    await page.goto(fake.url + path);
    await page.locator('[data-testid="assets"][data-loaded="true"]').waitFor();
    return page;
  }

  const card = (page: Page, asset: string) => page.locator(`[data-asset="${asset.replace(/["\\]/g, '\\$&')}"]`);

  it('renders a card per asset with a chart, the trend badges, the table and the status, under the CSP', async () => {
    const page = await open('/');
    await expect.poll(() => page.locator('section.card').count()).toBe(FEW.length);
    for (const asset of FEW) {
      const c = card(page, asset);
      await c.locator('[data-testid="chart"] canvas').first().waitFor();
      await expect.poll(() => c.locator('[data-testid="windows-table"] tbody tr').count()).toBe(12);
    }
    await expect.poll(() => card(page, 'bitcoin').getByTestId('trend-badge').textContent()).toBe('\u25b2 up \u00b7 +1.23% 30m');
    expect(await card(page, 'bitcoin').getByTestId('trend-badge').getAttribute('data-trend')).toBe('up');
    expect(await card(page, 'ethereum').getByTestId('trend-badge').textContent()).toBe('\u25bc down \u00b7 \u22120.50% 30m');
    expect(await card(page, HOSTILE).getByTestId('trend-badge').textContent()).toBe('\u25a0 flat \u00b7 \u00b10.00% 30m');
    // Before any live price, the last price is the newest window's close.
    expect(await card(page, 'bitcoin').getByTestId('last-price').textContent()).toMatch(/^\$3\d,\d{3}\.\d{2}$/);
    const firstRow = card(page, 'bitcoin').locator('[data-testid="windows-table"] tbody tr').first();
    expect(await firstRow.locator('td').first().textContent()).toBe('12:29');
    expect(await firstRow.locator('td').last().textContent()).toBe('no');

    const conn = page.getByTestId('connection');
    await expect.poll(() => conn.getAttribute('data-state')).toBe('live');
    expect(await conn.textContent()).toBe('live');
    expect(await page.getByTestId('counter-rejected').textContent()).toBe('10');
    expect(await page.getByTestId('counter-late').textContent()).toBe('7');
    expect(await page.getByTestId('counter-gaps').textContent()).toBe('3');
    expect(await page.getByTestId('counter-accepted').textContent()).toBe('123,456');
    expect(await page.locator('#sources li').allTextContents()).toEqual(status.sources.map((s) => s.name));

    // The hostile name is text, nothing else: no <img> anywhere, no dialog.
    expect(await card(page, HOSTILE).getByTestId('asset-name').textContent()).toBe(HOSTILE);
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.evaluate('document.body.innerHTML.includes("<img")')).toBe(false);
    expect(problems).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-1280x800.png'), fullPage: false });
  });

  it('follows the stream: live prices, a new window, a new trend, the connection state', async () => {
    const page = await open('/');
    await expect.poll(() => page.getByTestId('connection').getAttribute('data-state')).toBe('live');
    const price = card(page, 'bitcoin').getByTestId('last-price');
    const next = windowAt('bitcoin', N_WINDOWS, false);
    const update: AssetUpdate = {
      asset: 'bitcoin',
      windows: [{ ...windowAt('bitcoin', N_WINDOWS - 1, true), updatedAt: Date.now() }, next],
      trends: [trendAt('bitcoin', N_WINDOWS, 'down', -2.5)],
      price: { priceUsd: 40_123.45, receivedAt: Date.now() },
      tradesPerSecond: 12.34,
    };
    fake.send('asset', update);
    await expect.poll(() => price.textContent()).toBe('$40,123.45');
    expect(await card(page, 'bitcoin').getByTestId('trades-per-second').textContent()).toBe('12.3');
    expect(await card(page, 'bitcoin').getByTestId('trend-badge').textContent()).toBe('\u25bc down \u00b7 \u22122.50% 30m');
    const firstRow = card(page, 'bitcoin').locator('[data-testid="windows-table"] tbody tr').first();
    expect(await firstRow.locator('td').first().textContent()).toBe('12:30');
    expect(await firstRow.locator('td').nth(1).textContent()).toBe('12:31');

    for (let i = 1; i <= 5; i++) fake.send('asset', { asset: 'ethereum', price: { priceUsd: 2000 + i, receivedAt: Date.now() }, tradesPerSecond: i } satisfies AssetUpdate);
    await expect.poll(() => card(page, 'ethereum').getByTestId('last-price').textContent()).toBe('$2,005.00');
    const latencies = (await page.evaluate('window.__coinstream.latencies')) as number[];
    expect(latencies).toHaveLength(6);
    for (const l of latencies) expect(l).toBeGreaterThanOrEqual(0);
    expect(Math.max(...latencies)).toBeLessThan(5_000);

    // A new asset appears live: a card of its own.
    fake.send('asset', { asset: 'solana', windows: [windowAt('solana', N_WINDOWS)], price: { priceUsd: 150.5, receivedAt: Date.now() } } satisfies AssetUpdate);
    await card(page, 'solana').locator('canvas').first().waitFor();
    expect(await card(page, 'solana').getByTestId('last-price').textContent()).toBe('$150.50');

    fake.send('status', { ...status, state: 'replay-finished' } satisfies DashboardStatus);
    await expect.poll(() => page.getByTestId('connection').textContent()).toBe('replay finished');
    expect(problems).toEqual([]);
  });

  it('redraws windows that change out of order, and reloads on reset', async () => {
    const page = await open('/');
    await expect.poll(() => page.getByTestId('connection').getAttribute('data-state')).toBe('live');
    const c = card(page, 'ethereum');
    await c.locator('canvas').first().waitFor();
    const row = c.locator(`tr[data-window-start="${T0 + (N_WINDOWS - 5) * MINUTE}"]`);
    // A newer version of an older window (series.update of a past bar) and a window older than all (a redraw).
    const older = { ...windowAt('ethereum', N_WINDOWS - 5), close: 1234.5, high: 2500, updatedAt: Date.now() };
    fake.send('asset', { asset: 'ethereum', windows: [older, windowAt('ethereum', -10)] } satisfies AssetUpdate);
    await expect.poll(() => row.locator('td').nth(7).textContent()).toBe('1,234.50');
    // An older version of a window never replaces a newer one.
    fake.send('asset', { asset: 'ethereum', windows: [{ ...older, close: 999, updatedAt: older.updatedAt - 1 }], price: { priceUsd: 1, receivedAt: Date.now() } } satisfies AssetUpdate);
    await expect.poll(() => c.getByTestId('last-price').textContent()).toBe('$1.00');
    expect(await row.locator('td').nth(7).textContent()).toBe('1,234.50');

    const before = fake.hits.get('/api/assets') ?? 0;
    fake.send('reset', {});
    await expect.poll(() => fake.hits.get('/api/assets') ?? 0).toBe(before + 1);
    await expect.poll(() => page.locator('section.card canvas').count()).toBeGreaterThanOrEqual(FEW.length);
    await expect.poll(() => row.locator('td').nth(7).textContent()).not.toBe('1,234.50');
    expect(problems).toEqual([]);
  });

  it('shows a lost stream, retries when the server refuses it, and reloads the history once back', async () => {
    const page = await open('/');
    const conn = page.getByTestId('connection');
    await expect.poll(() => conn.getAttribute('data-state')).toBe('live');
    const before = fake.hits.get('/api/assets') ?? 0;
    fake.refuseStream = true;
    for (const s of fake.streams) s.destroy();
    await expect.poll(() => conn.getAttribute('data-state')).toBe('disconnected');
    expect(await conn.textContent()).toMatch(/reconnecting/);
    // EventSource's own retry is refused (it gives up then); the page's retry is refused once more.
    const refused = fake.refused;
    await expect.poll(() => fake.refused, { timeout: 10_000 }).toBeGreaterThanOrEqual(refused + 2);
    expect(await conn.getAttribute('data-state')).toBe('disconnected');
    fake.refuseStream = false;
    await expect.poll(() => conn.getAttribute('data-state'), { timeout: 10_000 }).toBe('live');
    await expect.poll(() => fake.hits.get('/api/assets') ?? 0).toBe(before + 1);
    fake.send('asset', { asset: 'bitcoin', price: { priceUsd: 50_000, receivedAt: Date.now() } } satisfies AssetUpdate);
    await expect.poll(() => card(page, 'bitcoin').getByTestId('last-price').textContent()).toBe('$50,000.00');
    // The browser itself logs the cut stream and the refused ones (503); nothing else may be there.
    expect(problems.filter((p) => !/ERR_INCOMPLETE_CHUNKED_ENCODING|status of 503/.test(p))).toEqual([]);
  });

  it('fits a phone (375 px): one column, no sideways scrolling of the page', async () => {
    const page = await open('/', { width: 375, height: 812 });
    await card(page, 'bitcoin').locator('canvas').first().waitFor();
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(375);
    const boxes = await Promise.all(FEW.map((a) => card(page, a).boundingBox()));
    for (const b of boxes) {
      expect(b).not.toBeNull();
      expect(b!.x).toBeGreaterThanOrEqual(0);
      expect(b!.x + b!.width).toBeLessThanOrEqual(375);
    }
    expect(boxes[1]!.y).toBeGreaterThan(boxes[0]!.y + boxes[0]!.height - 1);
    expect(problems).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-375x812.png'), fullPage: false });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-375x812-full.png'), fullPage: true });
  });

  it('shows a picker and one card when there are many assets', async () => {
    const page = await open('/many/');
    const picker = page.getByTestId('asset-picker');
    await picker.waitFor();
    expect(await picker.locator('option').allTextContents()).toEqual(MANY);
    await expect.poll(() => page.locator('section.card').count()).toBe(1);
    await card(page, 'bitcoin').locator('canvas').first().waitFor();
    await picker.selectOption('dogecoin');
    await card(page, 'dogecoin').locator('canvas').first().waitFor();
    expect(await page.locator('section.card').count()).toBe(1);
    expect(await card(page, 'dogecoin').getByTestId('last-price').textContent()).toMatch(/^\$0\.07\d{4}$/);
    expect(page.url()).toMatch(/#asset=dogecoin$/);
    expect(problems).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-picker-1280x800.png'), fullPage: false });
  });
});
