// The pipeline in virtual time: a ManualClock drives the trigger, a hand-fed source drives the input.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { createLogger, silentLogger } from '../../src/core/logger.js';
import type { Trade } from '../../src/core/trade.js';
import { DEFAULT_ENGINE_CONFIG } from '../../src/engine/contract.js';
import { WindowEngine } from '../../src/engine/window-engine.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import type { OutputBatch, Sink, StoredProgress } from '../../src/sinks/contract.js';
import type { Source, SourceEvent } from '../../src/sources/contract.js';

/** An unbounded source the test pushes events into. */
class FedSource implements Source {
  readonly name = 'fed';
  readonly bounded = false;
  private queue: SourceEvent[] = [];
  private wake: (() => void) | null = null;
  private idle = false;
  private onIdle: (() => void)[] = [];
  push(event: SourceEvent): void {
    this.queue.push(event);
    this.idle = false;
    this.wake?.();
  }
  /**
   * Resolves once the pipeline has handled every event pushed so far and asks for the next one (the
   * pipeline handles an event before it asks for the next). Only while the run is running.
   */
  drained(): Promise<void> {
    return this.idle ? Promise.resolve() : new Promise((r) => this.onIdle.push(r));
  }
  async *events(signal: AbortSignal): AsyncGenerator<SourceEvent> {
    signal.addEventListener('abort', () => this.wake?.());
    while (!signal.aborted) {
      if (this.queue.length === 0) {
        this.idle = true;
        this.onIdle.splice(0).forEach((r) => r());
        await new Promise<void>((r) => (this.wake = r));
      }
      while (this.queue.length > 0) yield this.queue.shift()!;
    }
  }
}

class MemorySink implements Sink {
  readonly name = 'memory';
  batches: OutputBatch[] = [];
  private waiters: { n: number; resolve: () => void }[] = [];
  async open(): Promise<void> {}
  async write(b: OutputBatch): Promise<void> {
    this.batches.push(b);
    this.waiters = this.waiters.filter((w) => (this.batches.length >= w.n ? (w.resolve(), false) : true));
  }
  /** Resolves once the sink holds n batches. */
  written(n: number): Promise<void> {
    return this.batches.length >= n ? Promise.resolve() : new Promise((resolve) => this.waiters.push({ n, resolve }));
  }
  async close(): Promise<void> {}
}

const T0 = 1_561_939_200_000;
const trade = (offset: number, price: number): Trade => ({ exchange: 'x', base: 'bitcoin', quote: 'united-states-dollar', direction: 'buy', price, volume: 1, timestamp: T0 + offset, priceUsd: price });

/** A run on default engine settings, fed by hand, in virtual time from `now`, until `stop` aborts it. */
function startRun(now = 0) {
  const clock = new ManualClock(now);
  const source = new FedSource();
  const sink = new MemorySink();
  const stop = new AbortController();
  const run = new Pipeline({ sources: [source], sinks: [sink], engine: DEFAULT_ENGINE_CONFIG, clock, logger: silentLogger, signal: stop.signal }).run();
  return { clock, source, sink, stop, run };
}

describe('Pipeline', () => {
  it('writes what changed on each trigger, nothing on quiet ticks, and the open windows on shutdown', async () => {
    const { clock, source, sink, stop, run } = startRun(1_000_000);

    source.push({ kind: 'trades', source: 'fed', trades: [trade(1000, 100), trade(2000, 110)] });
    source.push({ kind: 'rejected', rejected: { receivedAt: 1, source: 'fed', reason: 'malformed', detail: 'x', raw: '{' } });
    await source.drained();
    expect(sink.batches).toHaveLength(0); // nothing before the first trigger
    clock.advance(1000);
    await sink.written(1);
    expect(sink.batches).toHaveLength(1);
    const [b0] = sink.batches;
    expect(b0.batchId).toBe(0);
    expect(b0.windows.map((w) => [w.trades, w.close, w.isFinal, w.updatedAt])).toEqual([[2, 110, false, 1_001_000]]);
    expect(b0.trades.length).toBe(2);
    expect(b0.rejected.map((r) => r.reason)).toEqual(['malformed']);

    clock.advance(1000); // quiet tick
    expect(sink.batches).toHaveLength(1);

    source.push({ kind: 'trades', source: 'fed', trades: [trade(61_000, 120)] });
    await source.drained();
    clock.advance(1000);
    await sink.written(2);
    expect(sink.batches).toHaveLength(2);
    expect(sink.batches[1].batchId).toBe(1); // the quiet tick cut no batch
    expect(sink.batches[1].windows.map((w) => [w.windowStart - T0, w.trades])).toEqual([[60_000, 1]]);
    expect(sink.batches[1].trends[0].prevVwap).toBe(105);

    stop.abort(); // SIGINT: the current state is written once more, not as final
    const summary = await run;
    expect(summary.reason).toBe('aborted');
    expect(summary.accepted).toBe(3);
    expect(summary.rejected.malformed).toBe(1);
    expect(sink.batches).toHaveLength(2); // nothing changed since the last trigger: nothing to write
  });

  it('never reuses a batch id: after a crash where one store holds batch 4 and another nothing, the job starts over with batch 5', async () => {
    // A store that holds batch 4 of job "run" (positions of another source: it skips nothing of "fed").
    // Its engine state is a real one of this run's settings: every store's settings are checked.
    const engineState = JSON.stringify(new WindowEngine(DEFAULT_ENGINE_CONFIG).snapshot());
    const progress = { job: 'run', batchId: 4, positions: {}, settings: '{}', engineState, watermark: 0, finished: false, updatedAt: 0 };
    const ahead = new MemorySink();
    const behind = new MemorySink();
    Object.assign(ahead, { name: 'ahead', readProgress: async () => progress });
    Object.assign(behind, { name: 'behind', readProgress: async () => null });
    const clock = new ManualClock(0);
    const source = new FedSource();
    const stop = new AbortController();
    const run = new Pipeline({ sources: [source], sinks: [ahead, behind], engine: DEFAULT_ENGINE_CONFIG, clock, logger: silentLogger, signal: stop.signal }).run();
    source.push({ kind: 'trades', source: 'fed', trades: [trade(1000, 100)] });
    await source.drained();
    clock.advance(1000);
    await behind.written(1);
    stop.abort();
    await run;
    // A store's "already holds batch N" (a Delta txn) must never meet a batch cut differently under the same id.
    expect(behind.batches.map((b) => b.batchId)).toEqual([5]);
  });

  /** A store that starts empty (startsEmpty) and whose open() waits for the test to let it finish. */
  function emptyStoreOpenedByHand() {
    const store = new MemorySink();
    let finishOpen!: (err?: Error) => void;
    const opened = new Promise<void>((resolve, reject) => (finishOpen = (err) => (err ? reject(err) : resolve())));
    let readProgressCalls = 0;
    let closedAfterOpen = false;
    Object.assign(store, {
      name: 'empty-store',
      startsEmpty: () => true,
      open: () => opened,
      readProgress: async () => (readProgressCalls++, null),
      close: async () => {
        await opened.catch(() => undefined);
        closedAfterOpen = true;
      },
    });
    return { store, finishOpen, readProgressCalls: () => readProgressCalls, closedAfterOpen: () => closedAfterOpen };
  }

  it('reads while stores that start empty open; the first write waits for them, and nothing is asked of their progress', async () => {
    const { store, finishOpen, readProgressCalls } = emptyStoreOpenedByHand();
    const clock = new ManualClock(0);
    const source = new FedSource();
    const stop = new AbortController();
    const run = new Pipeline({ sources: [source], sinks: [store], engine: DEFAULT_ENGINE_CONFIG, clock, logger: silentLogger, signal: stop.signal }).run();
    // The store has not opened, and the pipeline already takes the trades and cuts a batch.
    source.push({ kind: 'trades', source: 'fed', trades: [trade(1000, 100)] });
    await source.drained();
    clock.advance(1000);
    source.push({ kind: 'trades', source: 'fed', trades: [trade(2000, 101)] });
    await source.drained();
    expect(store.batches, 'nothing is written before the store is open').toHaveLength(0);
    finishOpen();
    await store.written(1);
    stop.abort();
    await run;
    // Batch 0 was cut before the store opened; the shutdown's batch holds the second trade.
    expect(store.batches.map((b) => b.batchId)).toEqual([0, 1]);
    expect(store.batches[0].windows).toMatchObject([{ trades: 1 }]);
    expect(store.batches.flatMap((b) => b.windows).at(-1)).toMatchObject({ trades: 2, open: 100, close: 101 });
    expect(store.batches[0].progress, 'the store keeps progress from the first batch').toBeDefined();
    expect(readProgressCalls(), 'a store that starts empty holds no progress to read').toBe(0);
  });

  it('a store that starts empty and then fails to open fails the run with its error, having written nothing, and is closed', async () => {
    const { store, finishOpen, closedAfterOpen } = emptyStoreOpenedByHand();
    const clock = new ManualClock(0);
    const source = new FedSource();
    const run = new Pipeline({ sources: [source], sinks: [store], engine: DEFAULT_ENGINE_CONFIG, clock, logger: silentLogger }).run();
    source.push({ kind: 'trades', source: 'fed', trades: [trade(1000, 100)] });
    await source.drained();
    clock.advance(1000);
    finishOpen(new Error('made by another process meanwhile'));
    source.push({ kind: 'trades', source: 'fed', trades: [trade(2000, 101)] });
    await expect(run).rejects.toThrow('made by another process meanwhile');
    expect(store.batches).toHaveLength(0);
    expect(closedAfterOpen(), 'closed, after its open was over').toBe(true);
  });

  it('counts late trades and keeps them as rejected', async () => {
    const { clock, source, sink, stop, run } = startRun();
    source.push({ kind: 'trades', source: 'fed', trades: [trade(20 * 60_000, 100), trade(1000, 99)] });
    await source.drained();
    clock.advance(1000);
    await sink.written(1);
    stop.abort();
    const summary = await run;
    expect(summary.rejected.late).toBe(1);
    const late = sink.batches.flatMap((b) => b.rejected);
    expect(late).toHaveLength(1);
    expect(late[0]).toMatchObject({ reason: 'late', source: 'fed' });
    expect(JSON.parse(late[0].raw)).toMatchObject({ timestamp: T0 + 1000, priceUsd: 99 });
  });

  it('logs progress in words a person can read: no watermark yet before the first trade, then its time', async () => {
    const lines: { msg: string; watermark: string }[] = [];
    let seen: (() => void) | null = null;
    const logger = createLogger({ level: 'info', format: 'json', output: { write: (line) => (lines.push(JSON.parse(line)), seen?.()) } });
    /** Resolves at the next progress line that matches. */
    const progressLine = (match: RegExp) =>
      new Promise<string>((resolve) => {
        seen = () => {
          const hit = lines.find((l) => match.test(l.msg));
          if (hit) resolve(hit.msg);
        };
        seen();
      });
    const clock = new ManualClock(1_000_000);
    const source = new FedSource();
    const stop = new AbortController();
    const run = new Pipeline({ sources: [source], sinks: [new MemorySink()], engine: DEFAULT_ENGINE_CONFIG, clock, logger, signal: stop.signal, progressEveryMs: 5 }).run();

    const before = await progressLine(/^progress: 0 trades/);
    expect(before).toBe('progress: 0 trades (0/s), 0 rejected, 0 batches written, watermark none yet');
    source.push({ kind: 'trades', source: 'fed', trades: [trade(400_000, 100), trade(400_500, 101)] });
    source.push({ kind: 'rejected', rejected: { receivedAt: 1, source: 'fed', reason: 'malformed', detail: 'x', raw: '{' } });
    await source.drained();
    // Rejections count once written (with their batch); the watermark trails the newest event time by
    // the 5-minute default: T0 + 400.5 s - 300 s.
    clock.advance(1000);
    const after = await progressLine(/^progress: 2 trades .*, 1 batch written/);
    expect(after).toMatch(/^progress: 2 trades \(\d+\/s\), 1 rejected, 1 batch written, watermark 2019-07-01T00:01:40\.500Z$/);
    expect(lines.find((l) => l.msg === after)!.watermark).toBe('2019-07-01T00:01:40.500Z');
    stop.abort();
    await run;
  });

  it('stops after maxBatches written batches', async () => {
    const clock = new ManualClock(0);
    const source = new FedSource();
    const sink = new MemorySink();
    const run = new Pipeline({ sources: [source], sinks: [sink], engine: DEFAULT_ENGINE_CONFIG, clock, logger: silentLogger, maxBatches: 2 }).run();
    // Four trades, four ticks; once the run has stopped, pushing and ticking go nowhere.
    for (let i = 0; i < 4; i++) {
      source.push({ kind: 'trades', source: 'fed', trades: [trade(i * 1000, 100 + i)] });
      await Promise.race([source.drained(), run]);
      clock.advance(1000);
      await Promise.race([sink.written(i + 1), run]);
    }
    const summary = await run;
    expect(summary.reason).toBe('max-batches');
    expect(sink.batches.map((b) => b.batchId)).toEqual([0, 1]);
  });

  it('cuts full batches at exactly one row group (122,880 trades), then two, also in the middle of an event, and stops at --batches', async () => {
    const clock = new ManualClock(0);
    const source = new FedSource();
    const sink = new CopyingSink();
    const run = new Pipeline({ sources: [source], sinks: [sink], engine: DEFAULT_ENGINE_CONFIG, clock, logger: silentLogger, maxBatches: 3 }).run();
    // 540,000 trades in events of 60,000: row-group cuts fall inside events. No trigger ever fires
    // (virtual time stands still), so every cut is a full batch. The sink is slow: when a batch is
    // full, the one before is still being written, and the run must wait for it rather than spin.
    for (let e = 0; e < 9; e++) {
      const trades = Array.from({ length: 60_000 }, (_, i) => trade((e * 60_000 + i) * 10, 100 + (i % 7)));
      source.push({ kind: 'trades', source: 'fed', trades, receivedAt: 42 });
    }
    const summary = await run;
    expect(summary.reason).toBe('max-batches');
    // The first two batches are one row group each (the store starts writing early), later ones two.
    expect(sink.sizes).toEqual([122_880, 122_880, 245_760]);
    // Each batch starts where the one before ended (no trade lost or repeated at a cut), though the
    // batches' memory has been reused by then: the sink kept copies.
    expect(sink.timestamps[0][122_879] - T0).toBe(122_879 * 10);
    expect(sink.timestamps[1][0] - T0).toBe(122_880 * 10);
    expect(sink.timestamps[2][0] - T0).toBe(245_760 * 10);
    expect(sink.timestamps[2][245_759] - T0).toBe((491_520 - 1) * 10);
    expect(sink.receivedAt.every((r) => r === 42)).toBe(true);
  });

  it('counts the trigger interval from the last cut, a full batch included, so the timer never splits a row group', async () => {
    const { clock, source, sink, stop, run } = startRun();
    await source.drained(); // the run is up: its timer is armed at t = 0
    clock.advance(600);
    // A full batch at t = 600 ms: cut at once, by size.
    source.push({ kind: 'trades', source: 'fed', trades: Array.from({ length: 122_880 }, (_, i) => trade(i, 100)) });
    await sink.written(1);
    expect(sink.batches.map((b) => b.trades.length)).toEqual([122_880]);
    source.push({ kind: 'trades', source: 'fed', trades: [trade(200_000, 101)] });
    await source.drained();
    clock.advance(400); // t = 1 s: a fixed-rate timer would cut the lone trade here
    expect(sink.batches).toHaveLength(1);
    clock.advance(599);
    expect(sink.batches).toHaveLength(1);
    clock.advance(1); // t = 1.6 s: --trigger after the size cut
    await sink.written(2);
    expect(sink.batches.map((b) => b.trades.length)).toEqual([122_880, 1]);
    // Cut at 1.6 s, not at 1 s or 1.599 s: the batch's windows were collected then.
    expect(sink.batches[1].windows.map((w) => w.updatedAt)).toEqual([1600]);
    clock.advance(1000); // and from then on every --trigger again
    source.push({ kind: 'trades', source: 'fed', trades: [trade(200_001, 102)] });
    await source.drained();
    clock.advance(1000);
    await sink.written(3);
    expect(sink.batches.map((b) => b.trades.length)).toEqual([122_880, 1, 1]);
    expect(sink.batches[2].windows.map((w) => w.updatedAt)).toEqual([3600]);
    stop.abort();
    await run;
  });

  it('on a resumed job, maxBatches counts the batches of this run (it counted the stored ones, and a full batch then spun for ever)', async () => {
    const store = new ProgressSink();
    const fullBatches = (from: number) => Array.from({ length: 4 }, (_, e) => Array.from({ length: 61_440 }, (_, i) => trade(from + (e * 61_440 + i) * 10, 100)));
    const runWith = async (maxBatches: number, events: Trade[][]) => {
      const source = new FedSource();
      for (const trades of events) source.push({ kind: 'trades', source: 'fed', trades });
      return new Pipeline({ sources: [source], sinks: [store], engine: DEFAULT_ENGINE_CONFIG, clock: new ManualClock(0), logger: silentLogger, maxBatches }).run();
    };
    // Two full batches stored by a first run; the second run resumes after batch 1 with a maximum of 1.
    expect((await runWith(2, fullBatches(0))).reason).toBe('max-batches');
    const second = await runWith(1, fullBatches(10_000_000));
    expect(second).toMatchObject({ reason: 'max-batches', batches: 1, accepted: 122_880 });
    expect(store.batches.map((b) => [b.batchId, b.size])).toEqual([[0, 122_880], [1, 122_880], [2, 122_880]]);
  });
});

/** A store in memory that keeps the job's progress, so that a second run resumes from the first. */
class ProgressSink implements Sink {
  readonly name = 'progress';
  batches: { batchId: number; size: number }[] = [];
  private stored: StoredProgress | null = null;
  async open(): Promise<void> {}
  async readProgress(): Promise<StoredProgress | null> {
    return this.stored;
  }
  async write(b: OutputBatch): Promise<void> {
    this.batches.push({ batchId: b.batchId, size: b.trades.length });
    this.stored = { ...b.progress!, batchId: b.batchId, updatedAt: 0 };
  }
  async close(): Promise<void> {}
}

/** Keeps copies of what it needs: a batch's trade columns are reused once write() has resolved. */
class CopyingSink implements Sink {
  readonly name = 'copying';
  sizes: number[] = [];
  timestamps: Float64Array[] = [];
  receivedAt: number[] = [];
  async open(): Promise<void> {}
  async write(b: OutputBatch): Promise<void> {
    // Slow on purpose: a write ends only on the next turn of the event loop. Reading and cutting run on
    // promise jobs alone, so the pipeline gets as far as it can (a third batch full) while it runs.
    await new Promise((r) => setImmediate(r));
    this.sizes.push(b.trades.length);
    this.timestamps.push(b.trades.timestamp.slice(0, b.trades.length));
    this.receivedAt.push(b.trades.receivedAt[0], b.trades.receivedAt[b.trades.length - 1]);
  }
  async close(): Promise<void> {}
}
