// LiveDashboard (src/dashboard/live.ts), the dashboard data of `run` and `process`, fed by hand through
// its PipelineObserver hooks: source events (prices, trades per second, connection state), written
// batches (windows, trends, counters), stops of one or several pipelines. Virtual time (ManualClock);
// every assertion is on what a subscriber received or what the queries return, never on elapsed time.
import { KeyTable, TradeColumns, type TradeList } from '../../src/core/trade-columns.js';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import type { RejectedTrade, RejectReason, Trade } from '../../src/core/trade.js';
import type { AssetUpdate, DashboardEvent, DashboardStatus, TrendResult, WindowResult } from '../../src/dashboard/contract.js';
import { LiveDashboard } from '../../src/dashboard/live.js';
import type { OutputBatch } from '../../src/sinks/contract.js';
import { TradeBatchBuilder } from '../../src/sinks/trade-batch.js';
import type { SourceEvent } from '../../src/sources/contract.js';

const MIN = 60_000;
const T0 = Date.UTC(2024, 0, 31, 12, 0, 0);
const ALL = { from: -Infinity, to: Infinity };

function trade(base: string, priceUsd: number, extra: Partial<Trade> = {}): Trade {
  return { exchange: 'binance', base, quote: 'tether', direction: 'buy', price: priceUsd, volume: 1, timestamp: T0, priceUsd, ...extra };
}

/** A trades event, its trades as objects (live feeds) or as columns (a replay). */
function tradesEvent(trades: Trade[], extra: { source?: string; receivedAt?: number; form?: 'objects' | 'columns' } = {}): SourceEvent {
  let list: TradeList = trades;
  if (extra.form === 'columns') {
    const keys = new KeyTable();
    const columns = new TradeColumns(keys.keys, 1);
    for (const t of trades) columns.appendTrade(t, keys);
    list = columns;
  }
  return { kind: 'trades', source: extra.source ?? 'binance', trades: list, ...(extra.receivedAt !== undefined ? { receivedAt: extra.receivedAt } : {}) };
}

function win(asset: string, start: number, extra: Partial<WindowResult> = {}): WindowResult {
  return {
    asset, windowStart: start, windowEnd: start + MIN, trades: 1, totalVolume: 1, totalAmount: 100, averagePrice: 100, vwap: 100,
    open: 100, high: 100, low: 100, close: 100, buyVolume: 1, sellVolume: 0, isFinal: false, updatedAt: start + MIN, ...extra,
  };
}

function trend(asset: string, start: number, extra: Partial<TrendResult> = {}): TrendResult {
  return { asset, windowStart: start, windowEnd: start + MIN, vwap: 100, prevVwap: null, trend: null, avgPrice6m: 100, change6mPct: 0, windows6m: 1, isFinal: false, ...extra };
}

function rejected(reason: RejectReason): RejectedTrade {
  return { receivedAt: T0, source: 'binance', reason, detail: reason, raw: '{}' };
}

let batchId = 0;
function batch(o: { windows?: WindowResult[]; trends?: TrendResult[]; trades?: Trade[]; rejected?: RejectedTrade[]; watermark?: number; final?: boolean } = {}): OutputBatch {
  const builder = new TradeBatchBuilder(16);
  for (const t of o.trades ?? []) builder.push(t);
  return {
    batchId: batchId++, windows: o.windows ?? [], trends: o.trends ?? [], rejected: o.rejected ?? [], prices: [], trades: builder.take(),
    watermark: o.watermark ?? T0, final: o.final ?? false,
  };
}

/** A dashboard with one subscriber recording every event. */
function setup(start = T0) {
  const clock = new ManualClock(start);
  const live = new LiveDashboard(clock);
  const events: DashboardEvent[] = [];
  const unsubscribe = live.subscribe((e) => events.push(e));
  const assetUpdates = () => events.filter((e): e is { type: 'asset'; update: AssetUpdate } => e.type === 'asset').map((e) => e.update);
  const statuses = () => events.filter((e): e is { type: 'status'; status: DashboardStatus } => e.type === 'status').map((e) => e.status);
  const clear = () => events.splice(0);
  return { clock, live, events, unsubscribe, assetUpdates, statuses, clear };
}

const starts = (rows: { windowStart: number }[]) => rows.map((r) => (r.windowStart - T0) / MIN);

describe('LiveDashboard: trades events', () => {
  for (const form of ['objects', 'columns'] as const) it(`emits one asset update per asset with its newest price and trades per second (trades as ${form})`, () => {
    const { clock, live, assetUpdates, clear } = setup();
    const observer = live.observer();
    // 10 bitcoin trades (the last at 102, received at its own time), 3 ethereum trades (no receive time of their own).
    const trades: Trade[] = [];
    for (let i = 0; i < 9; i++) trades.push(trade('bitcoin', 90 + i, { receivedAt: T0 - 100 }));
    trades.push(trade('ethereum', 10), trade('ethereum', 11), trade('bitcoin', 102, { receivedAt: T0 - 7 }), trade('ethereum', 12));
    observer.event!(tradesEvent(trades, { receivedAt: T0 - 3, form }));

    const updates = assetUpdates();
    expect(updates).toHaveLength(2);
    const bitcoin = updates.find((u) => u.asset === 'bitcoin')!;
    expect(bitcoin).toMatchObject({ price: { priceUsd: 102, receivedAt: T0 - 7 }, tradesPerSecond: 2 });
    expect(Object.keys(bitcoin).sort()).toEqual(['asset', 'price', 'tradesPerSecond']);
    // Where the update also says when its oldest trade arrived: the oldest of the event's bitcoin trades.
    if (bitcoin.price!.oldestReceivedAt !== undefined) expect(bitcoin.price!.oldestReceivedAt).toBe(T0 - 100);
    // 3 trades over the 5 s span: 0.6/s, rounded. No receive time of their own: the event's.
    expect(updates.find((u) => u.asset === 'ethereum')).toMatchObject({ price: { priceUsd: 12, receivedAt: T0 - 3 }, tradesPerSecond: 1 });

    // With no trades for over 5 s, each asset's rate is brought down to 0 by itself (it stayed at the
    // last rate for ever, and a page loaded later showed none: two tabs disagreed).
    clear();
    clock.advance(5_000);
    expect(assetUpdates()).toEqual([]);
    clock.advance(1_000);
    expect(assetUpdates()).toEqual([{ asset: 'bitcoin', tradesPerSecond: 0 }, { asset: 'ethereum', tradesPerSecond: 0 }]);

    // A later event without a receive time anywhere: the clock's now. Trades older than 5 s no longer count.
    clear();
    observer.event!(tradesEvent([trade('bitcoin', 200), trade('bitcoin', 201), trade('bitcoin', 202), trade('bitcoin', 203), trade('bitcoin', 204)], { form }));
    expect(assetUpdates()).toHaveLength(1);
    expect(assetUpdates()[0]).toMatchObject({ asset: 'bitcoin', price: { priceUsd: 204, receivedAt: T0 + 6_000 }, tradesPerSecond: 1 });

    // Within the span the counts add up: 5 + 20 trades over 5 s.
    clear();
    clock.advance(1_000);
    observer.event!(tradesEvent(Array.from({ length: 20 }, (_, i) => trade('bitcoin', 300 + i)), { form }));
    expect(assetUpdates()).toHaveLength(1);
    expect(assetUpdates()[0]).toMatchObject({ asset: 'bitcoin', price: { priceUsd: 319, receivedAt: T0 + 7_000 }, tradesPerSecond: 5 });
  });

  it('sets every rate to 0 when the pipelines stop, and leaves no timer behind', () => {
    const { clock, live, assetUpdates, clear } = setup();
    const observer = live.observer();
    observer.event!(tradesEvent([trade('bitcoin', 1), trade('bitcoin', 2)]));
    clear();
    observer.stopped!('end-of-input');
    expect(assetUpdates()).toEqual([{ asset: 'bitcoin', tradesPerSecond: 0 }]);
    clear();
    clock.advance(60_000);
    expect(assetUpdates()).toEqual([]);
  });

  it('marks the source connected on its first trades, and lists no asset that has only prices', async () => {
    const { live, statuses } = setup();
    live.observer().event!(tradesEvent([trade('bitcoin', 1)], { source: 'kraken' }));
    expect(statuses().at(-1)).toMatchObject({ state: 'live', sources: [{ name: 'kraken', connected: true }] });
    expect(await live.assets()).toEqual([]);
    expect(await live.windows(ALL)).toEqual([]);
  });
});

describe('LiveDashboard: written batches', () => {
  it('keeps windows and trends by asset, newest version of each window, and answers from/to/limit', async () => {
    const { live, assetUpdates, statuses, clear } = setup();
    const observer = live.observer();
    observer.written!(
      batch({
        windows: [win('ethereum', T0 + 1 * MIN), win('bitcoin', T0 + 2 * MIN), win('bitcoin', T0), win('bitcoin', T0 + 1 * MIN), win('ethereum', T0)],
        trends: [trend('bitcoin', T0), trend('bitcoin', T0 + 1 * MIN), trend('ethereum', T0)],
      }),
      5,
      T0 + 1000,
    );
    const updates = assetUpdates();
    expect(updates.map((u) => u.asset).sort()).toEqual(['bitcoin', 'ethereum']);
    const btc = updates.find((u) => u.asset === 'bitcoin')!;
    expect(starts(btc.windows!)).toEqual([2, 0, 1]);
    expect(starts(btc.trends!)).toEqual([0, 1]);
    expect(statuses()).toHaveLength(1);

    // A later batch with a newer version of bitcoin's window 2 and a new window 3.
    clear();
    observer.written!(batch({ windows: [win('bitcoin', T0 + 2 * MIN, { trades: 7, isFinal: true }), win('bitcoin', T0 + 3 * MIN)] }), 5, T0 + 2000);
    expect(assetUpdates()).toEqual([{ asset: 'bitcoin', windows: [win('bitcoin', T0 + 2 * MIN, { trades: 7, isFinal: true }), win('bitcoin', T0 + 3 * MIN)] }]);

    expect(await live.assets()).toEqual(['bitcoin', 'ethereum']);
    const bitcoin = await live.windows({ asset: 'bitcoin', ...ALL });
    expect(starts(bitcoin)).toEqual([0, 1, 2, 3]);
    expect(bitcoin[2]).toMatchObject({ trades: 7, isFinal: true });
    // Every asset: by asset, then start.
    expect((await live.windows(ALL)).map((w) => `${w.asset}@${(w.windowStart - T0) / MIN}`)).toEqual(['bitcoin@0', 'bitcoin@1', 'bitcoin@2', 'bitcoin@3', 'ethereum@0', 'ethereum@1']);
    expect(starts(await live.trends({ asset: 'bitcoin', ...ALL }))).toEqual([0, 1]);
    expect(starts(await live.trends({ asset: 'ethereum', ...ALL }))).toEqual([0]);
    expect(await live.windows({ asset: 'dogecoin', ...ALL })).toEqual([]);

    // limit: the newest N, ascending.
    expect(starts(await live.windows({ asset: 'bitcoin', ...ALL, limit: 2 }))).toEqual([2, 3]);
    expect(starts(await live.windows({ asset: 'bitcoin', ...ALL, limit: 10 }))).toEqual([0, 1, 2, 3]);
    expect(starts(await live.trends({ asset: 'bitcoin', ...ALL, limit: 1 }))).toEqual([1]);
    // from/to: window_start >= from and window_end <= to.
    expect(starts(await live.windows({ asset: 'bitcoin', from: T0 + 1 * MIN, to: T0 + 3 * MIN }))).toEqual([1, 2]);
    expect(starts(await live.windows({ asset: 'bitcoin', from: T0 + 1 * MIN + 1, to: T0 + 4 * MIN - 1 }))).toEqual([2]);
    expect(starts(await live.windows({ asset: 'bitcoin', from: -Infinity, to: T0 + 2 * MIN }))).toEqual([0, 1]);
    expect(starts(await live.windows({ asset: 'bitcoin', from: T0 + 2 * MIN, to: Infinity }))).toEqual([2, 3]);
    expect(starts(await live.windows({ asset: 'bitcoin', from: T0 + 1 * MIN, to: Infinity, limit: 1 }))).toEqual([3]);
  });

  it('keeps at most `limit` windows over every asset when no asset is given (as the contract and the store dashboard do)', async () => {
    const { live } = setup();
    live.observer().written!(batch({ windows: [0, 1, 2].flatMap((i) => [win('bitcoin', T0 + i * MIN), win('ethereum', T0 + i * MIN)]) }), 1, T0);
    const rows = await live.windows({ ...ALL, limit: 2 });
    expect(rows).toHaveLength(2);
    expect(rows.map((w) => `${w.asset}@${(w.windowStart - T0) / MIN}`)).toEqual(['bitcoin@2', 'ethereum@2']);
  });

  it('counts accepted and rejected trades, and keeps lastCommitAt and the watermark', () => {
    const { live, statuses } = setup();
    const observer = live.observer();
    expect(live.status()).toMatchObject({ state: 'live', counters: { accepted: 0, rejected: { malformed: 0, invalid: 0, late: 0, duplicate: 0 }, gaps: 0 }, lastCommitAt: null, watermark: null });

    observer.written!(batch({ trades: [trade('bitcoin', 1), trade('bitcoin', 2), trade('ethereum', 3)], rejected: [rejected('late'), rejected('malformed'), rejected('late')], watermark: T0 - 5 * MIN }), 3, T0 + 100);
    expect(statuses().at(-1)).toMatchObject({ counters: { accepted: 3, rejected: { malformed: 1, invalid: 0, late: 2, duplicate: 0 }, gaps: 0 }, lastCommitAt: T0 + 100, watermark: T0 - 5 * MIN });

    // The final batch of a bounded run has watermark +Infinity: the last finite one stays.
    observer.written!(batch({ trades: [trade('bitcoin', 4)], rejected: [rejected('duplicate'), rejected('invalid')], watermark: Infinity, final: true }), 3, T0 + 200);
    const status = live.status();
    expect(status).toMatchObject({ counters: { accepted: 4, rejected: { malformed: 1, invalid: 1, late: 2, duplicate: 1 }, gaps: 0 }, lastCommitAt: T0 + 200, watermark: T0 - 5 * MIN });
    expect(statuses().at(-1)).toEqual(status);

    // A gap counts and is told.
    observer.event!({ kind: 'gap', source: 'binance', symbol: 'BTCUSDT', expected: '10', received: '12', at: T0 });
    expect(statuses().at(-1)!.counters.gaps).toBe(1);
    // status() hands out copies.
    status.counters.rejected.late = 99;
    expect(live.status().counters.rejected.late).toBe(2);
  });

  it('keeps only the newest 1,440 windows and trends per asset', async () => {
    const { live } = setup();
    const observer = live.observer();
    const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
    observer.written!(batch({ windows: range(0, 1000).map((i) => win('bitcoin', T0 + i * MIN)), trends: range(0, 1000).map((i) => trend('bitcoin', T0 + i * MIN)) }), 1, T0);
    observer.written!(batch({ windows: [...range(1000, 1500).map((i) => win('bitcoin', T0 + i * MIN)), win('ethereum', T0)], trends: range(1000, 1500).map((i) => trend('bitcoin', T0 + i * MIN)) }), 1, T0);
    // Arriving out of order in one batch: still the newest by window start are kept.
    observer.written!(batch({ windows: range(0, 1500).reverse().map((i) => win('solana', T0 + i * MIN)) }), 1, T0);

    for (const asset of ['bitcoin', 'solana']) {
      const windows = await live.windows({ asset, ...ALL });
      expect(windows).toHaveLength(1440);
      expect(starts(windows)).toEqual(range(60, 1500));
    }
    const trends = await live.trends({ asset: 'bitcoin', ...ALL });
    expect(starts(trends)).toEqual(range(60, 1500));
    // Another asset's windows are not trimmed by bitcoin's.
    expect(await live.windows({ asset: 'ethereum', ...ALL })).toEqual([win('ethereum', T0)]);
    // A window older than everything kept, arriving late, does not displace a newer one.
    observer.written!(batch({ windows: [win('bitcoin', T0 - MIN)] }), 1, T0);
    expect(starts(await live.windows({ asset: 'bitcoin', ...ALL }))).toEqual(range(60, 1500));
  });
});

describe('LiveDashboard: feed state', () => {
  it('is live while every source is connected, reconnecting while one is not', async () => {
    const { live, statuses } = setup();
    const observer = live.observer();
    observer.event!({ kind: 'connected', source: 'binance', url: 'wss://a', at: T0 });
    observer.event!({ kind: 'connected', source: 'kraken', url: 'wss://b', at: T0 });
    expect(statuses().at(-1)).toMatchObject({ state: 'live', sources: [{ name: 'binance', connected: true }, { name: 'kraken', connected: true }] });

    observer.event!({ kind: 'disconnected', source: 'kraken', reason: 'closed', retryInMs: 1000, at: T0 });
    expect(statuses().at(-1)).toMatchObject({ state: 'reconnecting', sources: [{ name: 'binance', connected: true }, { name: 'kraken', connected: false }] });
    expect(live.status().state).toBe('reconnecting');

    // Trades of the other source do not make it live again; the disconnected source's do.
    observer.event!(tradesEvent([trade('bitcoin', 1)], { source: 'binance' }));
    expect(live.status().state).toBe('reconnecting');
    observer.event!(tradesEvent([trade('bitcoin', 1)], { source: 'kraken' }));
    expect(live.status().state).toBe('live');

    observer.event!({ kind: 'disconnected', source: 'binance', reason: 'closed', retryInMs: 1000, at: T0 });
    expect(live.status().state).toBe('reconnecting');
    observer.event!({ kind: 'connected', source: 'binance', url: 'wss://a', at: T0 });
    expect(statuses().at(-1)).toMatchObject({ state: 'live', sources: [{ name: 'binance', connected: true }, { name: 'kraken', connected: true }] });

    // Events that change nothing shown emit nothing.
    const before = statuses().length;
    observer.event!({ kind: 'heartbeat', source: 'binance', at: T0 });
    observer.event!({ kind: 'price', source: 'coincap-prices', asset: 'bitcoin', priceUsd: 1, at: T0 });
    expect(statuses()).toHaveLength(before);
  });

  it("becomes 'replay-finished' only when both pipelines stopped at the end of their input", () => {
    const { live, statuses } = setup();
    const a = live.observer();
    const b = live.observer();
    a.event!(tradesEvent([trade('bitcoin', 1)], { source: 'replay:a.jsonl' }));
    b.event!(tradesEvent([trade('bitcoin', 1)], { source: 'replay:b.jsonl' }));

    a.stopped!('end-of-input');
    expect(live.status().state).toBe('live');
    // The same observer told twice counts once.
    a.stopped!('end-of-input');
    expect(live.status().state).toBe('live');

    b.stopped!('end-of-input');
    expect(live.status().state).toBe('replay-finished');
    expect(statuses().at(-1)).toMatchObject({ state: 'replay-finished', sources: [{ name: 'replay:a.jsonl', connected: false }, { name: 'replay:b.jsonl', connected: false }] });
    // A finished feed stays finished.
    b.event!({ kind: 'connected', source: 'replay:b.jsonl', url: 'file', at: T0 });
    expect(live.status().state).toBe('replay-finished');
  });

  it("is 'stopped' when the last pipeline to stop was aborted", () => {
    const { live } = setup();
    const a = live.observer();
    const b = live.observer();
    a.stopped!('end-of-input');
    b.stopped!('aborted');
    expect(live.status().state).toBe('stopped');
  });

  it("is not 'replay-finished' when an earlier pipeline failed or was aborted and the last reached the end", () => {
    for (const first of ['failed', 'aborted', 'max-batches'] as const) {
      const { live } = setup();
      const a = live.observer();
      const b = live.observer();
      a.stopped!(first);
      expect(live.status().state, first).toBe('live');
      b.stopped!('end-of-input');
      expect(live.status().state, `first ${first}, then end-of-input`).toBe('stopped');
    }
  });
});

describe('LiveDashboard: subscriptions', () => {
  it('sends nothing after unsubscribe, while other subscribers go on', () => {
    const { live, events, unsubscribe } = setup();
    const other: DashboardEvent[] = [];
    live.subscribe((e) => other.push(e));
    const observer = live.observer();
    observer.event!(tradesEvent([trade('bitcoin', 1)]));
    expect(events.length).toBeGreaterThan(0);
    const seen = events.length;
    const otherSeen = other.length;

    unsubscribe();
    observer.event!(tradesEvent([trade('bitcoin', 2)]));
    observer.written!(batch({ windows: [win('bitcoin', T0)] }), 1, T0);
    observer.event!({ kind: 'disconnected', source: 'binance', reason: 'closed', retryInMs: 1, at: T0 });
    observer.stopped!('end-of-input');
    expect(events).toHaveLength(seen);
    expect(other.length).toBeGreaterThan(otherSeen);
    expect(other.at(-1)).toMatchObject({ type: 'status', status: { state: 'replay-finished' } });
  });

  it('sends nothing to anyone after close', async () => {
    const { live, events } = setup();
    await live.close();
    const observer = live.observer();
    observer.event!(tradesEvent([trade('bitcoin', 1)]));
    observer.written!(batch({ windows: [win('bitcoin', T0)] }), 1, T0);
    expect(events).toEqual([]);
    // The data is still there to query.
    expect(await live.assets()).toEqual(['bitcoin']);
  });
});
