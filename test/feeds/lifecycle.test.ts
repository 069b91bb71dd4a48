// The resilient client against local websocket servers that misbehave the way real ones do.
import { createServer, type Server } from 'node:http';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { systemClock } from '../../src/core/clock.js';
import type { SourceEvent } from '../../src/sources/contract.js';
import { coinbase } from '../../src/sources/feeds/coinbase.js';
import { FeedSource } from '../../src/sources/feeds/feed-source.js';
import { backoffDelay } from '../../src/sources/feeds/ws-client.js';
import { metrics } from '../../src/core/metrics.js';

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((f) => f()));

/** A Coinbase match for SKL-USD with the given trade id. */
const match = (id: number) => JSON.stringify({ type: 'match', trade_id: id, side: 'sell', size: '1', price: String(0.5 + id / 1000), product_id: 'SKL-USD', sequence: id, time: new Date(1_618_677_817_000 + id * 1000).toISOString() });

/** Captures log lines, to check that the log says what happened. */
function capturingLogger() {
  const lines: string[] = [];
  const stream = new Writable({ write: (chunk, _enc, cb) => (lines.push(String(chunk)), cb()) });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

async function wsServer(onConnection: (socket: WebSocket, n: number) => void): Promise<{ url: string; connections: () => number }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => wss.once('listening', r));
  let n = 0;
  wss.on('connection', (socket) => onConnection(socket, ++n));
  cleanups.push(() => {
    wss.clients.forEach((c) => c.terminate());
    wss.close();
  });
  return { url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}`, connections: () => n };
}

/**
 * Runs a feed until `done` says so or `until` settles, returning every event. maxMs is only a safety
 * net: reaching it fails the test with the events seen so far.
 */
async function collect(source: FeedSource, done: (events: SourceEvent[]) => boolean, opts: { until?: Promise<unknown>; maxMs?: number } = {}): Promise<SourceEvent[]> {
  const maxMs = opts.maxMs ?? 10_000;
  const stop = new AbortController();
  const events: SourceEvent[] = [];
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    stop.abort();
  }, maxMs);
  void opts.until?.then(() => stop.abort());
  try {
    for await (const e of source.events(stop.signal)) {
      events.push(e);
      if (done(events)) break;
    }
  } finally {
    clearTimeout(timer);
    stop.abort();
  }
  if (timedOut) throw new Error(`collect: nothing ended the run within ${maxMs} ms (safety net); events: ${JSON.stringify(events.map((e) => e.kind))}`);
  return events;
}

/** Sends every message, then kills the socket without a close frame (code 1006) once they are written. */
function sendThenKill(socket: WebSocket, messages: string[]): void {
  messages.forEach((m, i) => socket.send(m, i === messages.length - 1 ? () => socket.terminate() : undefined));
}

const tradeIds = (events: SourceEvent[]) => events.flatMap((e) => (e.kind === 'trades' ? e.trades.map((t) => Number(t.tradeId)) : []));
const fast = { initialMs: 20, maxMs: 200, factor: 2 };

describe('resilient feed client', () => {
  it('reconnects when the server kills the socket mid-stream and resumes without loss', async () => {
    const server = await wsServer((socket, n) => {
      socket.once('message', () => {
        const ids = n === 1 ? [1, 2, 3] : [4, 5, 6];
        if (n === 1) sendThenKill(socket, ids.map(match));
        else ids.forEach((id) => socket.send(match(id)));
      });
    });
    const { logger } = capturingLogger();
    const source = new FeedSource(coinbase(['SKL-USD'], server.url), { clock: systemClock, logger, backoff: fast });
    const events = await collect(source, (ev) => tradeIds(ev).length >= 6);
    expect(tradeIds(events)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(events.filter((e) => e.kind === 'connected')).toHaveLength(2);
    expect(events.find((e) => e.kind === 'disconnected')).toMatchObject({ reason: expect.stringMatching(/closed by server: code 1006/) });
    expect(source.gaps).toBe(0);
  });

  it('counts trades re-sent after a reconnect once, and reports a real gap', async () => {
    const server = await wsServer((socket, n) => {
      socket.once('message', () => {
        // Second connection re-sends 2 and 3, then skips 4 and 5.
        const ids = n === 1 ? [1, 2, 3] : [2, 3, 6];
        if (n === 1) sendThenKill(socket, ids.map(match));
        else ids.forEach((id) => socket.send(match(id)));
      });
    });
    const source = new FeedSource(coinbase(['SKL-USD'], server.url), { clock: systemClock, logger: capturingLogger().logger, backoff: fast });
    const events = await collect(source, (ev) => tradeIds(ev).includes(6));
    expect(tradeIds(events)).toEqual([1, 2, 3, 6]);
    const duplicates = events.filter((e) => e.kind === 'rejected' && e.rejected.reason === 'duplicate');
    expect(duplicates).toHaveLength(2);
    expect(events.filter((e) => e.kind === 'gap')).toEqual([expect.objectContaining({ symbol: 'SKL-USD', expected: '4', received: '6' })]);
    const text = await metrics.metrics();
    expect(text).toMatch(/coinstream_feed_gaps_total\{feed="coinbase",symbol="SKL-USD"\} [1-9]/);
    expect(text).toMatch(/coinstream_feed_duplicates_total\{feed="coinbase"\} [1-9]/);
    expect(text).toMatch(/coinstream_feed_disconnects_total\{feed="coinbase",cause="closed"\} [1-9]/);
  });

  it("takes Coinbase's last_match as where ids go on, not as a trade; a trade rejected for its values is no gap", async () => {
    const lastMatch = (id: number) => match(id).replace('"type":"match"', '"type":"last_match"');
    const invalid = (id: number) => match(id).replace('"size":"1"', '"size":"abc"');
    const server = await wsServer((socket, n) => {
      socket.once('message', () => {
        // First connection: the newest match before it (10), then 11-14 with 13 unusable, then lost.
        // Second: 15 and 16 happened meanwhile (16 comes as last_match), then 17.
        if (n === 1) sendThenKill(socket, [lastMatch(10), match(11), match(12), invalid(13), match(14)]);
        else [lastMatch(16), match(17)].forEach((m) => socket.send(m));
      });
    });
    const source = new FeedSource(coinbase(['SKL-USD'], server.url), { clock: systemClock, logger: capturingLogger().logger, backoff: fast });
    const events = await collect(source, (ev) => tradeIds(ev).includes(17));
    // 10 was made before the run (a restarted run had it already): counting it counted it twice.
    expect(tradeIds(events)).toEqual([11, 12, 14, 17]);
    expect(events.filter((e) => e.kind === 'rejected').map((e) => e.kind === 'rejected' && e.rejected.reason)).toEqual(['invalid']);
    // 13 arrived (rejected), so 14 follows it; 15 and 16 were missed while away.
    expect(events.filter((e) => e.kind === 'gap')).toEqual([expect.objectContaining({ symbol: 'SKL-USD', expected: '15', received: '17' })]);
    expect(source.gaps).toBe(1);
  });

  it('reconnects a silent connection (no heartbeat) and tells it from a quiet market', async () => {
    // The second connection's quiet market: 25 heartbeats 50 ms apart, over four times staleAfterMs.
    const BEATS = 25;
    let quietEnough!: () => void;
    const quietMarketDone = new Promise<void>((r) => (quietEnough = r));
    const server = await wsServer((socket, n) => {
      socket.once('message', () => {
        if (n === 1) return; // accepts the subscription, then says nothing at all
        socket.send(match(1));
        // A quiet market: no trades, but heartbeats keep coming.
        let beats = 0;
        const beat = setInterval(() => {
          if (++beats === BEATS) clearInterval(beat);
          socket.send('{"type":"heartbeat","product_id":"SKL-USD","sequence":1,"last_trade_id":1,"time":"2021-04-17T16:43:37Z"}', () => beats === BEATS && quietEnough());
        }, 50);
        socket.on('close', () => clearInterval(beat));
      });
    });
    const { logger, lines } = capturingLogger();
    const source = new FeedSource(coinbase(['SKL-USD'], server.url), { clock: systemClock, logger, backoff: fast, staleAfterMs: 300 });
    // Watch until the heartbeating connection has had all its heartbeats: the silent connection must
    // be dropped, the heartbeating one kept.
    const events = await collect(source, () => false, { until: quietMarketDone });
    expect(tradeIds(events)).toEqual([1]);
    expect(events.filter((e) => e.kind === 'disconnected')).toEqual([expect.objectContaining({ reason: expect.stringMatching(/^stale: no message or pong for/) })]);
    // The heartbeating connection stayed up for over a second with no trade: not stale.
    expect(events.filter((e) => e.kind === 'connected')).toHaveLength(2);
    expect(lines.join('')).toMatch(/stale: no message or pong/);
  });

  it('backs off further on every refused handshake (HTTP 429, 451, a dropped connection) and logs why', async () => {
    let attempts = 0;
    const http: Server = createServer();
    const wss = new WebSocketServer({ noServer: true });
    http.on('upgrade', (req, socket, head) => {
      attempts++;
      if (attempts === 1) socket.end('HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n\r\n');
      else if (attempts === 2) socket.end('HTTP/1.1 451 Unavailable For Legal Reasons\r\n\r\n');
      else if (attempts === 3) socket.destroy();
      else wss.handleUpgrade(req, socket, head, (ws) => ws.once('message', () => ws.send(match(1))));
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    cleanups.push(() => {
      wss.clients.forEach((c) => c.terminate());
      http.close();
    });
    const url = `ws://127.0.0.1:${(http.address() as { port: number }).port}`;
    const { logger, lines } = capturingLogger();
    const source = new FeedSource(coinbase(['SKL-USD'], url), { clock: systemClock, logger, backoff: fast, random: () => 0.5 });
    const events = await collect(source, (ev) => tradeIds(ev).length === 1);
    const downs = events.filter((e) => e.kind === 'disconnected') as Extract<SourceEvent, { kind: 'disconnected' }>[];
    expect(downs.map((d) => d.reason)).toEqual([
      'handshake refused: HTTP 429 (rate limited)',
      'handshake refused: HTTP 451 (the exchange refuses connections from this location)',
      expect.stringMatching(/^connection failed: /),
    ]);
    expect(downs.map((d) => d.retryInMs)).toEqual([1, 2, 3].map((n) => backoffDelay(n, fast, () => 0.5)));
    expect(downs[0].retryInMs).toBeLessThan(downs[1].retryInMs);
    expect(downs[1].retryInMs).toBeLessThan(downs[2].retryInMs);
    expect(await metrics.metrics()).toMatch(/coinstream_feed_disconnects_total\{feed="coinbase",cause="http_429"\} [1-9]/);
    const log = lines.join('');
    expect(log).toMatch(/HTTP 429 \(rate limited\); reconnecting in/);
    expect(log).toMatch(/HTTP 451/);
  });

  it('keeps garbage frames as rejected and keeps the connection', async () => {
    const server = await wsServer((socket) => {
      socket.once('message', () => {
        socket.send('this is not json');
        socket.send('{"type":"match","trade_id":2,"side":"sell","size":"-1","price":"1","product_id":"SKL-USD","time":"2021-04-17T16:43:37Z"}');
        socket.send(match(3));
      });
    });
    const source = new FeedSource(coinbase(['SKL-USD'], server.url), { clock: systemClock, logger: capturingLogger().logger, backoff: fast });
    const events = await collect(source, (ev) => tradeIds(ev).length === 1);
    const rejected = events.flatMap((e) => (e.kind === 'rejected' ? [e.rejected] : []));
    expect(rejected.map((r) => [r.reason, r.raw.slice(0, 16)])).toEqual([['malformed', 'this is not json'], ['invalid', '{"type":"match",']]);
    expect(rejected[1].detail).toMatch(/volume must be a number > 0/);
    expect(events.filter((e) => e.kind === 'connected')).toHaveLength(1);
    expect(server.connections()).toBe(1);
  });

  it("reconnects at once, before the server's connection age limit, and subscribes again", async () => {
    const subscriptions: string[] = [];
    const server = await wsServer((socket, n) => {
      socket.once('message', (m) => {
        subscriptions.push(String(m));
        socket.send(match(n));
        const beat = setInterval(() => socket.send('{"type":"heartbeat","product_id":"SKL-USD"}'), 20);
        socket.on('close', () => clearInterval(beat));
      });
    });
    const source = new FeedSource(coinbase(['SKL-USD'], server.url), { clock: systemClock, logger: capturingLogger().logger, backoff: fast, maxConnectionAgeMs: 300 });
    const events = await collect(source, (ev) => tradeIds(ev).length >= 2);
    expect(events.find((e) => e.kind === 'disconnected')).toMatchObject({ reason: expect.stringMatching(/^planned reconnect/), retryInMs: 0 });
    expect(subscriptions).toHaveLength(2);
    expect(JSON.parse(subscriptions[1])).toMatchObject({ type: 'subscribe', channels: ['matches', 'heartbeat'] });
  });

  it('caps the backoff and spreads reconnects with jitter', () => {
    const b = { initialMs: 1000, maxMs: 60_000, factor: 2 };
    expect([1, 2, 3, 7, 20].map((n) => backoffDelay(n, b, () => 1))).toEqual([1000, 2000, 4000, 60_000, 60_000]);
    expect(backoffDelay(3, b, () => 0)).toBe(2000); // half fixed, half random
  });
});
