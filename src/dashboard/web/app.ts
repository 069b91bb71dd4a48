// The coinstream dashboard page: loads each asset's history from /api, then follows /api/stream (SSE).
// Bundled by scripts/build-web.mjs into dist/web/app.js; the server serves it under a strict CSP (no
// inline scripts or styles, no eval), so everything here is plain DOM + canvas, and every value from the
// data is set as text (textContent, dataset), never parsed as HTML.
import type { AssetUpdate, DashboardStatus, TrendResult, WindowResult } from '../contract.js';
import { AssetCard, setTrendSpan } from './card.js';
import { byId, el, setText } from './dom.js';
import { fmtDateTime, fmtInt, fmtTime } from './format.js';
import { AssetModel, isAssetUpdate, isStatus, isTrendResult, isWindowResult } from './model.js';

declare global {
  interface Window {
    /**
     * Test hooks, trade arrival -> on the page (ms) for every live price shown: `latencies` for the
     * newest trade of the update, `oldestLatencies` for the trade in it that waited longest.
     */
    __coinstream: { latencies: number[]; oldestLatencies: number[] };
  }
}

/** Up to this many assets each get a card; beyond, a picker shows one at a time. */
const MAX_CARDS = 4;
const HISTORY_LIMIT = 500;
const MAX_LATENCIES = 100_000;

const hooks = { latencies: [] as number[], oldestLatencies: [] as number[] };
window.__coinstream = hooks;

const ui = {
  connection: byId('connection', HTMLElement),
  accepted: byId('counter-accepted', HTMLElement),
  late: byId('counter-late', HTMLElement),
  rejected: byId('counter-rejected', HTMLElement),
  gaps: byId('counter-gaps', HTMLElement),
  watermark: byId('watermark', HTMLElement),
  lastCommit: byId('last-commit', HTMLElement),
  sources: byId('sources', HTMLUListElement),
  error: byId('error', HTMLDivElement),
  picker: byId('picker', HTMLElement),
  select: byId('asset-select', HTMLSelectElement),
  count: byId('asset-count', HTMLElement),
  assets: byId('assets', HTMLElement),
  empty: byId('empty', HTMLElement),
};

type StreamState = 'connecting' | 'open' | 'reconnecting';

const models = new Map<string, AssetModel>();
const cards = new Map<string, AssetCard>();
let status: DashboardStatus | null = null;
let stream: StreamState = 'connecting';
let selected: string | null = assetFromHash();
let generation = 0; // bumped by a reset: responses of an older generation are dropped

// ---------------------------------------------------------------- data

async function getJson(path: string): Promise<unknown> {
  const res = await fetch(path, { headers: { accept: 'application/json' }, cache: 'no-store' });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

function field(body: unknown, name: string): unknown[] {
  const v = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[name] : undefined;
  if (!Array.isArray(v)) throw new Error(`unexpected answer: no "${name}" list`);
  return v;
}

async function loadHistory(asset: string, gen: number): Promise<void> {
  const q = `asset=${encodeURIComponent(asset)}&limit=${HISTORY_LIMIT}`;
  const [wb, tb] = await Promise.all([getJson(`api/windows?${q}`), getJson(`api/trends?${q}`)]);
  if (gen !== generation) return;
  const windows = field(wb, 'windows').filter(isWindowResult) as WindowResult[];
  const trends = field(tb, 'trends').filter(isTrendResult) as TrendResult[];
  const model = ensureAsset(asset);
  model.mergeWindows(windows);
  model.mergeTrends(trends);
  cards.get(asset)?.renderAll();
}

let loading: Promise<void> | null = null;
let loadSeq = 0;
let retryMs = 500;

/** (Re)loads the asset list and every asset's history; retries with backoff until it works. */
function loadAll(): Promise<void> {
  if (loading) return loading;
  const gen = generation;
  const seq = ++loadSeq;
  const run = (async () => {
    try {
      // (No /api/health here: the stream sends the status first, and health answers 503 while the feed
      // reconnects, which the browser would log as an error.)
      const ab = await getJson('api/assets');
      if (gen !== generation) return;
      const assets = field(ab, 'assets').filter((a): a is string => typeof a === 'string' && a !== '');
      for (const a of assets) ensureAsset(a);
      await Promise.all([...new Set([...assets, ...models.keys()])].map((a) => loadHistory(a, gen)));
      showError(null);
      retryMs = 500;
    } catch (err) {
      if (gen !== generation) return; // a reset started another load
      showError(`Cannot load history: ${err instanceof Error ? err.message : String(err)}. Retrying\u2026`);
      setTimeout(() => void loadAll(), retryMs);
      retryMs = Math.min(retryMs * 2, 10_000);
    } finally {
      if (loadSeq === seq) loading = null;
      ui.assets.setAttribute('aria-busy', 'false');
      ui.assets.dataset.loaded = 'true';
      layout();
    }
  })();
  loading = run;
  return run;
}

function ensureAsset(asset: string): AssetModel {
  let m = models.get(asset);
  if (!m) {
    m = new AssetModel(asset);
    models.set(asset, m);
    cards.set(asset, new AssetCard(m));
    layout();
  }
  return m;
}

function reset(): void {
  generation++;
  for (const c of cards.values()) c.destroy();
  cards.clear();
  models.clear();
  loading = null;
  layout();
  void loadAll();
}

// ---------------------------------------------------------------- live stream

let source: EventSource | null = null;
let everOpen = false;
let reconnectMs = 1000;

/**
 * Opens the stream. EventSource reconnects by itself after a network error, sending Last-Event-ID, and
 * the server replays what was missed (or sends `reset`). Only when the server refused the stream does
 * EventSource give up; then a new one is made here (`fresh`), which has no Last-Event-ID, so the
 * history is fetched again once it is open (merging is idempotent).
 */
function connect(fresh = false): void {
  const es = new EventSource('api/stream');
  source = es;
  es.addEventListener('open', () => {
    reconnectMs = 1000;
    everOpen = true;
    stream = 'open';
    renderConnection();
    if (fresh) {
      fresh = false;
      void loadAll();
    }
  });
  es.addEventListener('error', () => {
    if (source !== es) return;
    if (es.readyState === EventSource.CLOSED) {
      // The server answered with an error: EventSource gives up; try again ourselves, with backoff.
      es.close();
      stream = 'reconnecting';
      setTimeout(() => connect(everOpen), reconnectMs);
      reconnectMs = Math.min(reconnectMs * 2, 15_000);
    } else {
      stream = everOpen ? 'reconnecting' : 'connecting';
    }
    renderConnection();
  });
  es.addEventListener('status', (ev) => {
    const data = parse(ev);
    if (isStatus(data)) renderStatus(data);
  });
  es.addEventListener('asset', (ev) => {
    const data = parse(ev);
    if (isAssetUpdate(data)) onAsset(data);
  });
  es.addEventListener('reset', () => reset());
}

function parse(ev: Event): unknown {
  if (!(ev instanceof MessageEvent) || typeof ev.data !== 'string') return undefined;
  try {
    return JSON.parse(ev.data);
  } catch (err) {
    console.warn(`coinstream: ignoring an unreadable ${ev.type} event:`, err);
    return undefined;
  }
}

function onAsset(update: AssetUpdate): void {
  const isNew = !models.has(update.asset);
  const model = ensureAsset(update.asset);
  const changed = model.apply(update);
  cards.get(update.asset)?.renderUpdate(changed);
  if (isNew) void loadHistory(update.asset, generation).catch((err: unknown) => showError(`Cannot load ${update.asset}: ${String(err)}`));
  if (update.price && Number.isFinite(update.price.receivedAt)) {
    const now = Date.now();
    hooks.latencies.push(now - update.price.receivedAt);
    hooks.oldestLatencies.push(now - (update.price.oldestReceivedAt ?? update.price.receivedAt));
    for (const xs of [hooks.latencies, hooks.oldestLatencies]) if (xs.length > MAX_LATENCIES) xs.splice(0, xs.length - MAX_LATENCIES);
  }
}

// ---------------------------------------------------------------- rendering

const FEED_TEXT: Record<string, string> = {
  live: 'live',
  reconnecting: 'feed reconnecting',
  'replay-finished': 'replay finished',
  stopped: 'stopped',
  store: 'store',
};

function renderConnection(): void {
  let state: string;
  let text: string;
  if (stream === 'connecting') {
    state = 'connecting';
    text = 'connecting\u2026';
  } else if (stream === 'reconnecting' && (status?.state === 'replay-finished' || status?.state === 'stopped')) {
    // The run said it was done before its server went away: that is the news, not the lost stream.
    state = status.state;
    text = `${FEED_TEXT[status.state]} (the run has ended)`;
  } else if (stream === 'reconnecting') {
    state = 'disconnected';
    text = 'disconnected, reconnecting\u2026';
  } else {
    state = status?.state ?? 'live';
    text = FEED_TEXT[state] ?? state;
  }
  ui.connection.dataset.state = state;
  ui.connection.dataset.stream = stream;
  setText(ui.connection, text);
  ui.connection.title = `dashboard stream: ${stream}${status ? `; feed: ${status.state}` : ''}`;
}

function renderStatus(s: DashboardStatus): void {
  status = s;
  if (setTrendSpan(typeof s.trendSpanMs === 'number' ? s.trendSpanMs : null)) for (const card of cards.values()) card.renderAll();
  const r = s.counters.rejected ?? {};
  const reasons = Object.entries(r).filter(([, n]) => typeof n === 'number');
  const total = reasons.reduce((sum, [, n]) => sum + n, 0);
  setText(ui.accepted, fmtInt(s.counters.accepted));
  setCounter(ui.late, r.late ?? 0);
  setCounter(ui.rejected, total);
  ui.rejected.title = reasons.map(([k, n]) => `${k} ${fmtInt(n)}`).join(', ') || 'none';
  setCounter(ui.gaps, s.counters.gaps);
  setText(ui.watermark, fmtTime(s.watermark));
  ui.watermark.title = fmtDateTime(s.watermark);
  setText(ui.lastCommit, fmtTime(s.lastCommitAt));
  ui.lastCommit.title = fmtDateTime(s.lastCommitAt);
  const items = (Array.isArray(s.sources) ? s.sources : []).map((src) => {
    const li = el('li', { class: src.connected ? 'src up' : 'src down', text: String(src.name), title: src.connected ? 'connected' : 'not connected' });
    li.dataset.connected = String(Boolean(src.connected));
    return li;
  });
  ui.sources.replaceChildren(...items);
  renderConnection();
}

function setCounter(e: HTMLElement, n: number | null): void {
  setText(e, fmtInt(n));
  e.classList.toggle('warn', typeof n === 'number' && n > 0);
}

function showError(message: string | null): void {
  ui.error.hidden = message === null;
  setText(ui.error, message ?? '');
}

function assetFromHash(): string | null {
  const m = /^#asset=(.*)$/.exec(location.hash);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return null; // a malformed hash selects nothing: the first asset is shown
  }
}

let pickerKey = '';

/** Cards for a few assets; a picker and one card for many. */
function layout(): void {
  const names = [...models.keys()].sort();
  ui.empty.hidden = names.length > 0 || ui.assets.dataset.loaded !== 'true';
  const many = names.length > MAX_CARDS;
  ui.picker.hidden = !many;
  ui.assets.classList.toggle('single', many || names.length === 1);
  let shown = names;
  if (many) {
    if (selected === null || !models.has(selected)) selected = names[0];
    const key = names.join('\u0000');
    if (key !== pickerKey) {
      pickerKey = key;
      ui.select.replaceChildren(...names.map((n) => el('option', { text: n, attrs: { value: n } })));
      setText(ui.count, `${names.length} assets`);
    }
    ui.select.value = selected;
    shown = [selected];
  }
  const wanted = shown.map((n) => cards.get(n)?.root).filter((e): e is HTMLElement => e !== undefined);
  const current = [...ui.assets.children];
  if (wanted.length !== current.length || wanted.some((e, i) => e !== current[i])) ui.assets.replaceChildren(...wanted);
  for (const n of shown) {
    const card = cards.get(n);
    if (!card) continue;
    card.ensureChart();
    card.renderAll();
  }
}

ui.select.addEventListener('change', () => {
  selected = ui.select.value;
  history.replaceState(null, '', `#asset=${encodeURIComponent(selected)}`);
  layout();
});
window.addEventListener('hashchange', () => {
  const a = assetFromHash();
  if (a !== null && models.has(a)) {
    selected = a;
    layout();
  }
});

renderConnection();
connect();
void loadAll();
