// Backpressure: a consumer that stops pulling pauses the socket (TCP pushes back on the server) instead
// of letting the client queue without limit; draining resumes it, and nothing is lost or reordered.
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { ManualClock, systemClock } from '../../src/core/clock.js';
import { coincap } from '../../src/sources/feeds/coincap.js';
import { FeedSource } from '../../src/sources/feeds/feed-source.js';
import { resilientSocket, type WsClientOptions, type WsEvent } from '../../src/sources/feeds/ws-client.js';

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((f) => f()));

const T0 = 1_561_939_200_000;
/** A CoinCap-shaped trade; trade i has timestamp T0 + i, so order and completeness are checkable. */
const frame = (i: number) => `{"exchange":"binance","base":"bitcoin","quote":"tether","direction":"buy","price":1,"volume":1,"timestamp":${T0 + i},"priceUsd":1}`;
const indexOf = (data: string) => (JSON.parse(data) as { timestamp: number }).timestamp - T0;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** What one socket read can bring in after the pause (libuv reads at most 64 KiB at a time). */
const READ_BYTES = 64 * 1024;
const overshoot = Math.ceil(READ_BYTES / frame(0).length) + 1;

type Record_ = { level: number; msg: string; [k: string]: unknown };

/** Captures log records; waitFor resolves on the first record (already there or to come) that matches. */
function capturingLogger() {
  const records: Record_[] = [];
  const waiters: { re: RegExp; resolve: (r: Record_) => void }[] = [];
  const logger = pino({ level: 'debug' }, {
    write: (s: string) => {
      const r = JSON.parse(s) as Record_;
      records.push(r);
      for (const w of waiters.filter((w) => w.re.test(r.msg))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(r);
      }
    },
  });
  /** A deadline, not a sleep: fails fast, and says what was logged, when the line never comes. */
  const waitFor = (re: RegExp, withinMs = 10_000): Promise<Record_> => {
    const found = records.find((r) => re.test(r.msg));
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log line matching ${re} within ${withinMs} ms; logged: ${records.map((r) => r.msg).join(' | ')}`)), withinMs);
      waiters.push({ re, resolve: (r) => (clearTimeout(timer), resolve(r)) });
    });
  };
  const matching = (re: RegExp) => records.filter((r) => re.test(r.msg));
  return { logger, records, waitFor, matching };
}

/** A server that sends `count` trade frames as fast as it can to its first connection, and stays open. */
async function floodServer(count: number): Promise<{ url: string; closed: Promise<void> }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => wss.once('listening', r));
  let first: (socket: WebSocket) => void = () => undefined;
  const opened = new Promise<WebSocket>((resolve) => (first = resolve));
  let n = 0;
  wss.on('connection', (socket) => {
    if (++n > 1) return;
    first(socket);
    for (let i = 0; i < count; i++) socket.send(frame(i));
  });
  cleanups.push(() => {
    wss.clients.forEach((c) => c.terminate());
    wss.close();
  });
  const closed = opened.then((s) => new Promise<void>((resolve) => s.once('close', () => resolve())));
  return { url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}`, closed };
}

const fast = { initialMs: 20, maxMs: 200, factor: 2 };
const PAUSE = /pausing the socket/;
const RESUME = /caught up after [\d.]+ s paused .*; resuming the socket$/;

function clientOptions(url: string, clock: WsClientOptions['clock'], logger: WsClientOptions['logger'], extra: Partial<WsClientOptions> = {}): WsClientOptions {
  return { url, name: 'binance', subscribeMessages: () => [], pingAfterMs: 1000, staleAfterMs: 3000, connectTimeoutMs: 5000, backoff: fast, clock, logger, ...extra };
}

/** Pulls message events until `count` of them or another kind of event; returns their trade indexes and what stopped it. */
async function drain(gen: AsyncGenerator<WsEvent>, into: number[], count: number): Promise<IteratorResult<WsEvent> | undefined> {
  while (into.length < count) {
    const r = await gen.next();
    if (r.done || r.value.kind !== 'message') return r;
    into.push(indexOf(r.value.data));
  }
  return undefined;
}

describe('backpressure', () => {
  it('pauses the socket while the pipeline is behind, resumes it once drained, and delivers every trade once, in order', async () => {
    const N = 20_000;
    const server = await floodServer(N);
    const { logger, waitFor, matching } = capturingLogger();
    const source = new FeedSource(coincap(undefined, server.url), { clock: systemClock, logger, backoff: fast });
    const stop = new AbortController();
    const events = source.events(stop.signal);
    const got: number[] = [];
    const pull = async () => {
      const r = await events.next();
      if (!r.done && r.value.kind === 'trades') got.push(...r.value.trades.map((t) => t.timestamp - T0));
      return r;
    };
    try {
      expect((await pull()).value).toMatchObject({ kind: 'connected' });
      for (let i = 0; i < 5; i++) await pull();
      // The consumer stops pulling: the socket must pause at the default 1,000 messages.
      const paused = await waitFor(PAUSE);
      expect(paused).toMatchObject({ level: 40, feed: 'coincap', queued: 1000, msg: 'coincap: the pipeline is behind; pausing the socket (1000 messages queued)' });
      while (got.length < N) expect((await pull()).done).toBe(false);
      expect(got).toEqual(range(N));
      const pauses = matching(PAUSE);
      const resumes = matching(RESUME);
      expect(resumes).toHaveLength(pauses.length); // drained to empty: every pause has ended
      for (const r of resumes) {
        expect(r).toMatchObject({ level: 30, feed: 'coincap', pausedMs: expect.any(Number), socketOpen: true });
        expect(r.peakQueued as number).toBeGreaterThanOrEqual(1000);
        expect(r.peakQueued as number).toBeLessThanOrEqual(1000 + overshoot);
      }
      expect(source.duplicates).toBe(0);
    } finally {
      stop.abort();
      await events.return(undefined);
    }
  });

  it('does not call a paused connection stale, and watches it again once resumed', async () => {
    const N = 2000;
    const server = await floodServer(N);
    const clock = new ManualClock(T0);
    const { logger, records, waitFor, matching } = capturingLogger();
    const stop = new AbortController();
    const gen = resilientSocket(clientOptions(server.url, clock, logger, { queue: { highWaterMessages: 100 } }), stop.signal);
    try {
      expect((await gen.next()).value).toMatchObject({ kind: 'open' });
      const got: number[] = [];
      await drain(gen, got, 1);
      expect(await waitFor(PAUSE)).toMatchObject({ msg: 'binance: the pipeline is behind; pausing the socket (100 messages queued)' });
      // Ten stale periods of our own silence: the watchdog runs (and pings) but must not reconnect.
      clock.advance(10 * 3000);
      expect(records.filter((r) => /stale/.test(r.msg))).toEqual([]);
      expect(await drain(gen, got, N)).toBeUndefined();
      expect(got).toEqual(range(N));
      const resumes = matching(RESUME);
      expect(resumes.length).toBeGreaterThan(0);
      expect(resumes).toHaveLength(matching(PAUSE).length);
      expect(resumes[0]).toMatchObject({ pausedMs: 30_000, msg: expect.stringMatching(/^binance: the pipeline caught up after 30\.0 s paused \(peak \d+ messages, [\d.]+ KiB queued\); resuming the socket$/) });
      for (const r of resumes) expect(r.peakQueued as number).toBeLessThanOrEqual(100 + overshoot);
      // Resumed, the server's silence counts again: one stale period later the client reconnects.
      clock.advance(3000);
      expect((await gen.next()).value).toMatchObject({ kind: 'close', reason: 'stale: no message or pong for 3 s', fatal: false });
    } finally {
      stop.abort();
      await gen.return(undefined);
    }
  });

  it('pauses on bytes as well as on messages', async () => {
    const N = 2000;
    const server = await floodServer(N);
    const { logger, waitFor, matching } = capturingLogger();
    const stop = new AbortController();
    const highWaterBytes = 16 * 1024;
    const gen = resilientSocket(clientOptions(server.url, systemClock, logger, { queue: { highWaterMessages: 1_000_000, highWaterBytes } }), stop.signal);
    try {
      expect((await gen.next()).value).toMatchObject({ kind: 'open' });
      const got: number[] = [];
      await drain(gen, got, 1);
      const paused = await waitFor(PAUSE);
      expect(paused.msg).toMatch(/^binance: the pipeline is behind; pausing the socket \(\d+ messages, 16\.\d KiB queued\)$/);
      expect(paused.queuedBytes as number).toBeGreaterThanOrEqual(highWaterBytes);
      expect(paused.queuedBytes as number).toBeLessThan(highWaterBytes + frame(0).length + 1);
      expect(await drain(gen, got, N)).toBeUndefined();
      expect(got).toEqual(range(N));
      const resumes = matching(RESUME);
      expect(resumes).toHaveLength(matching(PAUSE).length);
      for (const r of resumes) expect(r.peakQueuedBytes as number).toBeLessThanOrEqual(highWaterBytes + READ_BYTES + frame(0).length + 4);
    } finally {
      stop.abort();
      await gen.return(undefined);
    }
  });

  it('ends a connection cleanly when its planned reconnect comes while paused', async () => {
    const server = await floodServer(5000);
    const clock = new ManualClock(T0);
    const { logger, waitFor, matching } = capturingLogger();
    const stop = new AbortController();
    const gen = resilientSocket(clientOptions(server.url, clock, logger, { queue: { highWaterMessages: 100 }, maxConnectionAgeMs: 60_000 }), stop.signal);
    try {
      expect((await gen.next()).value).toMatchObject({ kind: 'open' });
      const got: number[] = [];
      await drain(gen, got, 1);
      await waitFor(PAUSE);
      clock.advance(60_000);
      await server.closed; // the client dropped the connection while paused
      // What was queued still arrives, in order, then the close, and the socket is not resumed.
      const stopped = await drain(gen, got, Infinity);
      expect(stopped?.value).toMatchObject({ kind: 'close', reason: expect.stringMatching(/^planned reconnect/), retryInMs: 0, fatal: false });
      expect(got.length).toBeGreaterThanOrEqual(100);
      expect(got).toEqual(range(got.length));
      expect(matching(/caught up after 60\.0 s paused .*; the socket had closed meanwhile$/)).toMatchObject([{ socketOpen: false }]);
      expect(matching(RESUME)).toEqual([]);
    } finally {
      stop.abort();
      await gen.return(undefined);
    }
  });

  it('stops cleanly when aborted while paused', async () => {
    const server = await floodServer(5000);
    const { logger, waitFor } = capturingLogger();
    const stop = new AbortController();
    const gen = resilientSocket(clientOptions(server.url, systemClock, logger, { queue: { highWaterMessages: 100 } }), stop.signal);
    expect((await gen.next()).value).toMatchObject({ kind: 'open' });
    const got: number[] = [];
    await drain(gen, got, 1);
    await waitFor(PAUSE);
    stop.abort();
    await server.closed;
    // The backlog is handed over, then the generator ends: no close event, no reconnect.
    expect(await drain(gen, got, Infinity)).toEqual({ done: true, value: undefined });
    expect(got).toEqual(range(got.length));
  });
});
