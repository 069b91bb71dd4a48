// The dashboard end to end: `coinstream run` replaying two assets, its dashboard in headless Debian
// Chromium (playwright-core). Charts render for both assets, values change while the replay runs, the
// trend badge ends equal to the store's newest trend row, no page or console errors; screenshots in
// test-artifacts/. Then the trade-arrival -> on-page latency at a replay of over 2,000 trades/s,
// printed as p50/p99 (a benchmark figure, not asserted: the machine is shared).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/sinks/duckdb/open.js';
import { fmtPct } from '../../src/dashboard/web/format.js';
import { freePort, killAll, spawnCoinstream, type Spawned } from '../helpers/process.js';
import { KRAKEN_FILE } from '../oracle/inputs.js';

const REQUIRE = process.env.COINSTREAM_REQUIRE_SERVICES === '1';
const CHROMIUM = process.env.COINSTREAM_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = resolve(import.meta.dirname, '../../test-artifacts');
const missing = existsSync(CHROMIUM) ? null : `${CHROMIUM} is missing (apt-get install -y chromium)`;
if (missing && REQUIRE) throw new Error(missing);
if (missing) console.warn(`skipping the dashboard browser test: ${missing}`);

const dir = mkdtempSync(join(tmpdir(), 'coinstream-browser-'));

/** The Kraken hour as bitcoin and as ethereum (price / 20), `hours` times over, shifted hour by hour. */
function twoAssets(file: string, hours: number): number {
  const rows = readFileSync(KRAKEN_FILE, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown> & { timestamp: number; price: number; priceUsd: number });
  const lines: string[] = [];
  for (let h = 0; h < hours; h++) {
    for (const t of rows) {
      const timestamp = t.timestamp + h * 3_600_000;
      lines.push(JSON.stringify({ ...t, timestamp }));
      lines.push(JSON.stringify({ ...t, base: 'ethereum', price: +(t.price / 20).toFixed(2), priceUsd: +(t.priceUsd / 20).toFixed(2), timestamp }));
    }
  }
  writeFileSync(file, lines.join('\n') + '\n');
  return lines.length;
}

async function startRun(file: string, store: string, speed: string): Promise<{ run: Spawned; url: string }> {
  const port = await freePort();
  const run = spawnCoinstream(['run', '--source', `replay:${file}`, '--speed', speed, '--sink', `duckdb:${store}`, '--port', String(port)]);
  const line = await run.waitFor('stderr', /dashboard on http:\/\/[^"]+/);
  return { run, url: /http:\/\/[^"]+/.exec(line)![0] };
}

/** Errors the page reports (uncaught exceptions, console errors), collected from `since` on. */
function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  return errors;
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

describe.skipIf(missing !== null)('dashboard in the browser, against a running replay', () => {
  let browser: Browser;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  }, 60_000);

  afterAll(async () => {
    killAll();
    await browser?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('renders both assets, moves while the replay runs, ends with the store\'s trend; no errors', async () => {
    const file = join(dir, 'two.jsonl');
    const store = join(dir, 'two.duckdb');
    twoAssets(file, 1);
    // --speed 120: the hour in 30 s.
    const { run, url } = await startRun(file, store, '120');
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors = watchErrors(page);
    await page.goto(url);
    for (const asset of ['bitcoin', 'ethereum']) {
      await page.locator(`[data-asset="${asset}"] canvas`).first().waitFor({ timeout: 30_000 });
    }
    // Values change live: the last price of bitcoin takes at least two different values.
    const price = page.locator('[data-asset="bitcoin"] [data-testid="last-price"]');
    await expect.poll(() => price.textContent(), { timeout: 30_000 }).toMatch(/\d/);
    const first = await price.textContent();
    await expect.poll(() => price.textContent(), { timeout: 30_000 }).not.toBe(first);
    await expect.poll(() => page.locator('[data-testid="connection"]').textContent(), { timeout: 10_000 }).toMatch(/live/i);
    await page.screenshot({ path: join(ARTIFACTS, 'e2e-running-1280x800.png') });
    const errorsWhileRunning = [...errors];

    const { code } = await run.exit;
    expect(code, run.stderr().slice(-3000)).toBe(0);
    // The last batch reached the page before the server closed: its badge is the store's newest trend.
    for (const asset of ['bitcoin', 'ethereum']) {
      const [newest] = await queryRows(store, `SELECT trend, change_6m_pct FROM price_trends WHERE asset = '${asset}' ORDER BY window_start DESC LIMIT 1`, { readOnly: true });
      const badge = page.locator(`[data-asset="${asset}"] [data-testid="trend-badge"]`);
      await expect.poll(() => badge.getAttribute('data-trend'), { timeout: 10_000 }).toBe(String(newest.trend ?? 'none'));
      expect(await badge.textContent()).toContain(fmtPct(Number(newest.change_6m_pct)));
    }
    // The run said the replay was done before its server went away: the page says so, not "disconnected".
    await expect.poll(() => page.locator('[data-testid="connection"]').textContent(), { timeout: 10_000 }).toMatch(/replay finished/);
    await page.screenshot({ path: join(ARTIFACTS, 'e2e-finished-1280x800.png') });
    await page.setViewportSize({ width: 375, height: 812 });
    await page.screenshot({ path: join(ARTIFACTS, 'e2e-finished-375x812.png') });
    await page.close();
    // Once the run has exited, the browser may log the refused reconnects: only the running part counts.
    expect(errorsWhileRunning).toEqual([]);
  }, 120_000);

  it('measures trade arrival -> on the page at a replay of more than 2,000 trades/s', async () => {
    const file = join(dir, 'fast.jsonl');
    const store = join(dir, 'fast.duckdb');
    const lines = twoAssets(file, 8);
    // 8 hours of two assets (42,752 trades) at 1500x: 19 s, ~2,230 trades/s.
    const { run, url } = await startRun(file, store, '1500');
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(url);
    await page.locator('[data-asset="bitcoin"] canvas').first().waitFor({ timeout: 30_000 });
    const started = Date.now();
    const { code } = await run.exit;
    expect(code).toBe(0);
    const seconds = (Date.now() - started) / 1000;
    const { latencies, oldestLatencies } = await page.evaluate(() => (window as unknown as { __coinstream: { latencies: number[]; oldestLatencies: number[] } }).__coinstream);
    await page.close();
    expect(latencies.length).toBeGreaterThan(20);
    const rate = Math.round(lines / Math.max(seconds, 1));
    const stats = (xs: number[]) => `p50 ${percentile(xs, 50)} ms, p99 ${percentile(xs, 99)} ms, max ${Math.max(...xs)} ms`;
    console.log(
      `dashboard latency, trade arrival -> on the page, ~${rate} trades/s over ${seconds.toFixed(1)} s, ${latencies.length} updates: ` +
        `newest trade of each update ${stats(latencies)}; the trade that waited longest in each update ${stats(oldestLatencies)}`,
    );
  }, 120_000);
});
