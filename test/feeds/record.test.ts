// `coinstream record` keeps what a live source receives, rotating files by size; the record reads
// back through `--source replay:` to the same trades. A .gz record is a run of complete gzip members,
// one per flush, so a recorder killed at any moment leaves a file that reads back to its last flush.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import type { Trade } from '../../src/core/trade.js';
import type { Source, SourceEvent } from '../../src/sources/contract.js';
import { recordSources, rotatedName } from '../../src/sources/feeds/recorder.js';
import { startReplayServer, type ReplayServer } from '../../src/sources/feeds/replay-server.js';
import { WebSocketServer } from 'ws';

const KRAKEN = 'data/kraken-btcusd-2019-07-01.coincap.jsonl';
const dir = mkdtempSync(join(tmpdir(), 'coinstream-record-'));
let server: ReplayServer | null = null;
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await server?.close();
});

interface LogLine { level: number; msg: string; file?: string; bytes?: number; lines?: number }

/** Calls `until` with every JSON log line a child writes to stderr; resolves once it returns true. */
function watchStderr(child: ChildProcess, until: (logs: LogLine[]) => boolean): { logs: LogLine[]; text: () => string; reached: Promise<void> } {
  const logs: LogLine[] = [];
  let text = '';
  let partial = '';
  const reached = new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      text += d;
      const parts = (partial + d.toString('utf8')).split('\n');
      partial = parts.pop()!;
      for (const p of parts) {
        try {
          logs.push(JSON.parse(p));
        } catch {
          // not a log line
        }
      }
      if (until(logs)) resolve();
    });
    child.on('exit', (code, signal) => reject(new Error(`child exited (${code ?? signal}) before the awaited log: ${text}`)));
  });
  reached.catch(() => undefined);
  return { logs, text: () => text, reached };
}

const flushes = (logs: LogLine[]) => logs.filter((l) => l.msg === 'recording flushed');
const flushedLines = (logs: LogLine[]) => flushes(logs).reduce((n, l) => n + (l.lines ?? 0), 0);

/** A logger whose JSON lines land in an array; `until(check)` resolves once a line makes check true. */
function arrayLogger(): { logger: pino.Logger; logs: LogLine[]; until: (check: (logs: LogLine[]) => boolean) => Promise<void> } {
  const logs: LogLine[] = [];
  let waiters: { check: (logs: LogLine[]) => boolean; resolve: () => void }[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line));
      waiters = waiters.filter((w) => (w.check(logs) ? (w.resolve(), false) : true));
      cb();
    },
  });
  const until = (check: (logs: LogLine[]) => boolean) =>
    check(logs) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ check, resolve }));
  return { logger: pino({ level: 'debug' }, sink), logs, until };
}

function trade(i: number): Trade {
  return { exchange: 'test', base: 'bitcoin', quote: 'tether', direction: i % 2 ? 'buy' : 'sell', price: 10000 + i, volume: 0.5, timestamp: 1_700_000_000_000 + i, priceUsd: 10000 + i, receivedAt: 1_700_000_000_000 + i };
}

/**
 * A source whose trades the test pushes by hand. `drained()` resolves once the consumer asked for
 * more with nothing queued: the recorder has taken (buffered or written) everything pushed.
 */
function handSource(): { source: Source; push: (trades: Trade[]) => void; pushEvent: (event: SourceEvent) => void; drained: () => Promise<void> } {
  const queue: SourceEvent[] = [];
  let wake: () => void = () => undefined;
  let waiting: (() => void)[] = [];
  const pushEvent = (event: SourceEvent) => {
    queue.push(event);
    wake();
  };
  return {
    push: (trades) => pushEvent({ kind: 'trades', source: 'hand', trades }),
    pushEvent,
    drained: () => new Promise<void>((r) => waiting.push(r)),
    source: {
      name: 'hand',
      bounded: false,
      async *events(signal) {
        signal.addEventListener('abort', () => wake(), { once: true });
        while (!signal.aborted) {
          if (queue.length > 0) yield queue.shift()!;
          else {
            const idle = new Promise<void>((r) => (wake = r));
            for (const w of waiting) w();
            waiting = [];
            await idle;
          }
        }
      },
    },
  };
}

describe('coinstream record', () => {
  it('names rotated files FILE.N.jsonl(.gz)', () => {
    expect(rotatedName('a/trades.jsonl.gz', 0)).toBe('a/trades.jsonl.gz');
    expect(rotatedName('a/trades.jsonl.gz', 2)).toBe('a/trades.2.jsonl.gz');
    expect(rotatedName('t.jsonl', 1)).toBe('t.1.jsonl');
  });

  it('records a live feed to rotating gzip files that hold every trade exactly once', async () => {
    server = await startReplayServer({ file: KRAKEN, port: 0, speed: Infinity, logger: silentLogger });
    const original = readFileSync(KRAKEN, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const out = join(dir, 'trades.jsonl.gz');
    const child = spawn('node', ['bin/coinstream.js', 'record', '--source', `coincap@${server.url}`, '--out', out, '--rotate-mb', '0.1'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, COINSTREAM_LOG_LEVEL: 'debug' },
    });
    children.push(child);
    // Every trade sent has reached a file once the flush logs add up to all of them.
    const stderr = watchStderr(child, (logs) => flushedLines(logs) >= original.length);
    const exit = new Promise<number>((r) => child.on('exit', (c) => r(c ?? -1)));
    await server.done;
    await stderr.reached;
    child.kill('SIGINT');
    expect(await exit).toBe(0);
    expect(stderr.text()).toMatch(/recorded 2672 trades/);
    const files = readdirSync(dir).filter((f) => f.startsWith('trades')).sort();
    expect(files.length).toBeGreaterThan(2); // 0.1 MB per file, ~0.45 MB of trades
    const recorded = files.flatMap((f) => gunzipSync(readFileSync(join(dir, f))).toString('utf8').split('\n').filter(Boolean)).map((l) => JSON.parse(l));
    expect(recorded).toHaveLength(original.length);
    const strip = ({ receivedAt: _r, ...t }: Record<string, unknown>) => t;
    expect(new Set(recorded.map((t) => JSON.stringify(strip(t))))).toEqual(new Set(original.map((t) => JSON.stringify(t))));
    expect(recorded.every((t) => typeof t.receivedAt === 'number')).toBe(true);
  });

  it('leaves a readable gzip file when the recorder is killed with SIGKILL', async () => {
    // A CoinCap-shaped feed that never stops: a trade every few milliseconds.
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise<void>((resolve, reject) => wss.once('listening', resolve).once('error', reject));
    let sent = 0;
    const ticker = setInterval(() => {
      for (const client of wss.clients) for (let k = 0; k < 5; k++) client.send(JSON.stringify(trade(sent++)));
    }, 5);
    try {
      const url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}/trades/test`;
      const out = join(dir, 'killed.jsonl.gz');
      const child = spawn('node', ['--import', 'tsx', 'test/feeds/record-child.ts', url, out, '200'], { stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(child);
      const stderr = watchStderr(child, (logs) => flushes(logs).length >= 2);
      await stderr.reached;
      const exit = new Promise<string | null>((r) => child.on('exit', (_c, signal) => r(signal)));
      child.kill('SIGKILL');
      expect(await exit).toBe('SIGKILL');
      const reported = flushedLines(stderr.logs);
      expect(reported).toBeGreaterThan(0);
      const lines = gunzipSync(readFileSync(out)).toString('utf8').split('\n');
      expect(lines.pop()).toBe(''); // whole lines only
      expect(lines.length).toBeGreaterThanOrEqual(reported);
      const trades = lines.map((l) => JSON.parse(l));
      expect(trades.every((t) => t.exchange === 'test' && typeof t.price === 'number' && typeof t.timestamp === 'number')).toBe(true);
      // In order, none missing, none twice, up to the last flush.
      expect(trades.map((t) => t.price - 10000)).toEqual(trades.map((_, i) => i));
    } finally {
      clearInterval(ticker);
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    }
  });

  it('flushes a complete gzip member on its clock while trades arrive, and the rest on close', async () => {
    const clock = new ManualClock(0);
    const { logger, logs, until } = arrayLogger();
    const { source, push, drained } = handSource();
    const stop = new AbortController();
    const out = join(dir, 'clocked.jsonl.gz');
    const done = recordSources([source], { out, rotateBytes: 1 << 30, signal: stop.signal, logger, clock, flushEveryMs: 2000 });
    push([trade(0), trade(1)]);
    push([trade(2)]);
    await drained();
    clock.advance(1999);
    expect(flushes(logs)).toHaveLength(0);
    expect(readFileSync(out)).toHaveLength(0);
    clock.advance(1);
    await until((l) => flushes(l).length === 1);
    expect(flushes(logs)[0]).toMatchObject({ file: out, lines: 3 });
    // What a kill now would leave: one complete member with the three trades.
    expect(gunzipSync(readFileSync(out)).toString('utf8').trim().split('\n')).toHaveLength(3);
    push([trade(3)]);
    await drained();
    stop.abort();
    expect(await done).toEqual({ trades: 4, files: [out], rejected: {}, rejectsFile: null, gaps: 0 });
    expect(flushes(logs).map((l) => l.lines)).toEqual([3, 1]);
    expect(logs.at(-1)?.msg).toBe('recorded 4 trades');
    expect(gunzipSync(readFileSync(out)).toString('utf8').trim().split('\n').map((l) => JSON.parse(l).price)).toEqual([10000, 10001, 10002, 10003]);
  });

  it('started again with the same --out, goes on in the next numbered file: a recording is never overwritten', async () => {
    const out = join(dir, 'again.jsonl.gz');
    const recordOnce = async (prices: number[]) => {
      const { logger, logs } = arrayLogger();
      const { source, push, drained } = handSource();
      const stop = new AbortController();
      const done = recordSources([source], { out, rotateBytes: 1 << 30, signal: stop.signal, logger, flushEveryMs: 10 });
      push(prices.map((p) => trade(p)));
      await drained();
      stop.abort();
      return { result: await done, msgs: logs.map((l) => l.msg) };
    };
    const read = (file: string) => gunzipSync(readFileSync(file)).toString('utf8').trim().split('\n').map((l) => JSON.parse(l).price);
    expect((await recordOnce([0, 1])).result.files).toEqual([out]);
    const second = await recordOnce([2]);
    const next = rotatedName(out, 1);
    expect(second.result.files).toEqual([next]);
    expect(second.msgs).toContain(`${out} already holds a recording: recording to ${next} (a recording is never overwritten; replay the files together)`);
    // Before, the first run's trades were gone: the file was opened with 'w'.
    expect(read(out)).toEqual([10000, 10001]);
    expect(read(next)).toEqual([10002]);
    expect((await recordOnce([3])).result.files).toEqual([rotatedName(out, 2)]);
  });

  it('keeps rejected messages with their reason beside the record, and logs gaps and connections', async () => {
    const { logger, logs } = arrayLogger();
    const { source, push, pushEvent, drained } = handSource();
    const stop = new AbortController();
    const out = join(dir, 'with-rejects.jsonl.gz');
    const done = recordSources([source], { out, rotateBytes: 1 << 30, signal: stop.signal, logger, flushEveryMs: 10 });
    const reject = (reason: 'malformed' | 'invalid', raw: string) =>
      pushEvent({ kind: 'rejected', rejected: { receivedAt: Date.UTC(2026, 10, 26), source: 'hand', reason, detail: `${reason} by hand`, raw } });
    pushEvent({ kind: 'connected', source: 'hand', url: 'ws://127.0.0.1:1', at: 0 });
    push([trade(0)]);
    reject('malformed', '{"oops');
    pushEvent({ kind: 'gap', source: 'hand', symbol: 'BTC-USD', expected: '4', received: '6', at: 0 });
    reject('invalid', '{"price":-1}');
    push([trade(1)]);
    await drained();
    stop.abort();
    const rejectsFile = join(dir, 'with-rejects.rejected.jsonl');
    // Before, record skipped every event but trades: these two messages and the gap left no trace.
    expect(await done).toEqual({ trades: 2, files: [out], rejected: { malformed: 1, invalid: 1 }, rejectsFile, gaps: 1 });
    expect(readFileSync(rejectsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l))).toEqual([
      { received_at: '2026-11-26T00:00:00.000Z', source: 'hand', reason: 'malformed', detail: 'malformed by hand', raw: '{"oops' },
      { received_at: '2026-11-26T00:00:00.000Z', source: 'hand', reason: 'invalid', detail: 'invalid by hand', raw: '{"price":-1}' },
    ]);
    const msgs = logs.map((l) => l.msg);
    expect(msgs).toContain('connected');
    expect(msgs).toContain('gap in trade ids: trades were missed');
    expect(msgs.filter((m) => /a message was rejected/.test(m))).toEqual([`hand: a message was rejected (malformed: malformed by hand); kept with its reason in ${rejectsFile}, as are any after it`]);
    expect(msgs.at(-1)).toBe(`recorded 2 trades; 2 message(s) rejected (malformed 1, invalid 1), kept in ${rejectsFile}; 1 gap(s) in trade ids: trades were missed (see the warnings)`);
    // The record itself holds the trades only, and reads back as before.
    expect(gunzipSync(readFileSync(out)).toString('utf8').trim().split('\n').map((l) => JSON.parse(l).price)).toEqual([10000, 10001]);
  });

  it('writes plain .jsonl as whole lines in the same rhythm', async () => {
    const { logger, logs, until } = arrayLogger();
    const { source, push, drained } = handSource();
    const stop = new AbortController();
    const out = join(dir, 'plain.jsonl');
    const done = recordSources([source], { out, rotateBytes: 1 << 30, signal: stop.signal, logger, flushEveryMs: 10 });
    push([trade(0), trade(1)]);
    await until((l) => flushes(l).length === 1);
    expect(readFileSync(out, 'utf8').split('\n')).toHaveLength(3);
    push([trade(2)]);
    await drained();
    stop.abort();
    expect((await done).trades).toBe(3);
    expect(readFileSync(out, 'utf8').split('\n').map((l) => (l ? JSON.parse(l).price : l))).toEqual([10000, 10001, 10002, '']);
  });

  it('rejects when the output cannot be opened', async () => {
    const { source } = handSource();
    const stop = new AbortController();
    await expect(recordSources([source], { out: join(dir, 'no-such-dir', 'x.jsonl.gz'), rotateBytes: 1 << 20, signal: stop.signal, logger: silentLogger })).rejects.toThrow(/ENOENT/);
  });
});
