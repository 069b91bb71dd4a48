import { tradeAt } from '../../src/core/trade-columns.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import type { Trade } from '../../src/core/trade.js';
import type { SourceEvent, SourcePosition, TradeOrigins } from '../../src/sources/contract.js';
import { mergeByEventTime, sliceTrades } from '../../src/sources/merge.js';
import { paceByEventTime } from '../../src/sources/pace.js';

const T0 = Date.UTC(2019, 6, 1);
type TradesEvent = Extract<SourceEvent, { kind: 'trades' }>;

// ---- Test inputs: streams as records (trades and rejects), cut into events -------------------

/** One stream: its records (a trade's timestamp, or null for a reject) and how it is cut into events. */
interface StreamSpec {
  /** Event-time steps from one trade to the next (null: a rejected line). */
  steps: (number | null)[];
  start: number;
  /** Sizes of successive trades events (cycled); a reject always is an event of its own. */
  sizes: number[];
  positions: boolean;
}

interface Rec {
  stream: number;
  idx: number;
  /** Trade timestamp, or undefined for a reject. */
  ts?: number;
  trade?: Trade;
}

const id = (stream: number, idx: number) => `${stream}:${idx}`;
const pos = (idx: number): SourcePosition => ({ offset: (idx + 1) * 10, line: idx + 1 });

function records(stream: number, spec: StreamSpec): Rec[] {
  let ts = T0 + spec.start;
  return spec.steps.map((step, idx) => {
    if (step === null) return { stream, idx };
    ts += step;
    const trade: Trade = { exchange: `x${stream}`, base: 'bitcoin', quote: 'tether', direction: 'buy', price: 1, volume: 1, timestamp: ts, priceUsd: 1, tradeId: id(stream, idx) };
    return { stream, idx, ts, trade };
  });
}

/** Record indexes grouped into events: runs of trades of the given sizes, each reject alone. */
function chunk(recs: Rec[], sizes: number[]): Rec[][] {
  const groups: Rec[][] = [];
  let g = 0;
  for (let i = 0; i < recs.length; ) {
    if (recs[i].ts === undefined) {
      groups.push([recs[i++]]);
      continue;
    }
    const group: Rec[] = [];
    const size = sizes[g++ % sizes.length];
    while (i < recs.length && recs[i].ts !== undefined && group.length < size) group.push(recs[i++]);
    groups.push(group);
  }
  return groups;
}

function toEvents(stream: number, groups: Rec[][], positions: boolean): SourceEvent[] {
  const source = `replay:s${stream}`;
  return groups.map((group): SourceEvent => {
    const last = group[group.length - 1];
    if (last.ts === undefined) {
      const e: SourceEvent = { kind: 'rejected', rejected: { receivedAt: 7, source, reason: 'malformed', detail: `line ${last.idx + 1}`, raw: id(stream, last.idx) } };
      if (positions) e.end = pos(last.idx);
      return e;
    }
    const origins: TradeOrigins = { raw: (i) => `raw ${id(stream, group[i].idx)}`, where: (i) => `line ${group[i].idx + 1}` };
    if (positions) origins.position = (i) => pos(group[i].idx);
    const e: TradesEvent = { kind: 'trades', source, trades: group.map((r) => r.trade!), receivedAt: 1000 + stream, origins };
    if (positions) e.end = pos(last.idx);
    return e;
  });
}

function eventsOf(specs: StreamSpec[]): { recs: Rec[][]; events: SourceEvent[][] } {
  const recs = specs.map((spec, s) => records(s, spec));
  return { recs, events: recs.map((r, s) => toEvents(s, chunk(r, specs[s].sizes), specs[s].positions)) };
}

/** Awaits n turns: microtasks and setImmediate turns, never timers. */
async function turns(n: number): Promise<void> {
  for (let j = 0; j < n; j++) {
    if (j % 2 === 0) await Promise.resolve();
    else await new Promise<void>((r) => setImmediate(r));
  }
}

async function* deliver(events: SourceEvent[], delays: number[] = [0]): AsyncGenerator<SourceEvent> {
  for (let i = 0; i < events.length; i++) {
    await turns(delays[i % delays.length]);
    yield events[i];
  }
}

async function collect(events: AsyncIterable<SourceEvent>): Promise<SourceEvent[]> {
  const out: SourceEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

/** Everything an event says, origins asked for every trade: what two runs are compared by. */
function describeEvent(e: SourceEvent) {
  if (e.kind === 'rejected') return { kind: e.kind, raw: e.rejected.raw, end: e.end };
  if (e.kind !== 'trades') return { kind: e.kind };
  const o = e.origins!;
  return {
    kind: e.kind,
    source: e.source,
    receivedAt: e.receivedAt,
    end: e.end,
    trades: e.trades.map((t, i) => ({ id: t.tradeId, raw: o.raw(i), where: o.where(i), position: o.position?.(i) })),
  };
}

/** The records out, in order: `stream:idx`. */
function flatIds(events: SourceEvent[]): string[] {
  return events.flatMap((e) => (e.kind === 'trades' ? e.trades.map((t) => t.tradeId!) : e.kind === 'rejected' ? [e.rejected.raw] : []));
}

/** The reference: a plain k-way merge, one record at a time, over per-record arrays. */
function referenceMerge(recs: Rec[][]): string[] {
  const at = recs.map(() => 0);
  const out: string[] = [];
  for (;;) {
    let best = -1;
    let bestKey = Infinity;
    for (let s = 0; s < recs.length; s++) {
      if (at[s] >= recs[s].length) continue;
      const key = recs[s][at[s]].ts ?? -Infinity;
      if (best === -1 || key < bestKey) {
        best = s;
        bestKey = key;
      }
    }
    if (best === -1) return out;
    const r = recs[best][at[best]++];
    out.push(id(r.stream, r.idx));
  }
}

// ---- Arbitraries -------------------------------------------------------------------------------

const stepArb = (sorted: boolean) =>
  fc.option(sorted ? fc.integer({ min: 0, max: 4 }) : fc.integer({ min: -3, max: 5 }), { freq: 8, nil: null });

const streamArb = (o: { sorted?: boolean; positions?: boolean } = {}) =>
  fc.record({
    steps: fc.array(stepArb(o.sorted ?? false), { maxLength: 60 }),
    start: fc.integer({ min: 0, max: 30 }),
    sizes: fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 5 }),
    positions: o.positions === undefined ? fc.boolean() : fc.constant(o.positions),
  });

const streamsArb = (o: { sorted?: boolean; positions?: boolean } = {}) => fc.array(streamArb(o), { minLength: 1, maxLength: 10 });
const delaysArb = fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 8 });

const merge = (events: SourceEvent[][], delays?: number[][]) =>
  collect(mergeByEventTime(events.map((ev, s) => deliver(ev, delays?.[s % delays.length]))));

// ---- mergeByEventTime ---------------------------------------------------------------------------

describe('mergeByEventTime', () => {
  it('is the k-way merge of the records: every record once, each stream in order, as a one-by-one reference merge', async () => {
    await fc.assert(
      fc.asyncProperty(streamsArb(), async (specs) => {
        const { recs, events } = eventsOf(specs);
        const out = await merge(events);
        const ids = flatIds(out);
        expect(ids).toEqual(referenceMerge(recs));
        // Every record exactly once, and each stream's in its order.
        for (const [s, r] of recs.entries()) expect(ids.filter((x) => x.startsWith(`${s}:`))).toEqual(r.map((x) => id(s, x.idx)));
        expect(ids).toHaveLength(recs.reduce((n, r) => n + r.length, 0));
        // No empty events, and every trades event out is from one stream.
        for (const e of out) if (e.kind === 'trades') expect(e.trades.length).toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
  });

  it('merges sorted streams into trades sorted by (timestamp, stream index)', async () => {
    await fc.assert(
      fc.asyncProperty(streamsArb({ sorted: true }), async (specs) => {
        const { events } = eventsOf(specs);
        const trades = (await merge(events)).flatMap((e) => (e.kind === 'trades' ? [...e.trades] : []));
        const key = (t: Trade) => [t.timestamp, Number(t.tradeId!.split(':')[0]), Number(t.tradeId!.split(':')[1])];
        for (let i = 1; i < trades.length; i++) {
          const [a, b] = [key(trades[i - 1]), key(trades[i])];
          expect(a[0] < b[0] || (a[0] === b[0] && (a[1] < b[1] || (a[1] === b[1] && a[2] < b[2])))).toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('gives the same output whatever the timing of its inputs', async () => {
    await fc.assert(
      fc.asyncProperty(streamsArb(), fc.array(delaysArb, { minLength: 1, maxLength: 10 }), fc.array(delaysArb, { minLength: 1, maxLength: 10 }), async (specs, d1, d2) => {
        const { events } = eventsOf(specs);
        const a = (await merge(events, d1)).map(describeEvent);
        const b = (await merge(events, d2)).map(describeEvent);
        expect(a).toEqual(b);
      }),
      { numRuns: 150 },
    );
  });

  it('keeps each trade\'s origins, and ends every event at its last trade\'s position', async () => {
    await fc.assert(
      fc.asyncProperty(streamsArb(), async (specs) => {
        const { events } = eventsOf(specs);
        // The input's origins and end, per record.
        const input = new Map<string, { raw: string; where?: string; position?: SourcePosition; withPositions: boolean }>();
        for (const [s, evs] of events.entries()) {
          for (const e of evs) {
            if (e.kind !== 'trades') continue;
            [...e.trades].forEach((t, i) => input.set(t.tradeId!, { raw: e.origins!.raw(i), where: e.origins!.where(i), position: e.origins!.position?.(i), withPositions: specs[s].positions }));
          }
        }
        for (const e of await merge(events)) {
          if (e.kind === 'rejected') {
            const s = Number(e.rejected.raw.split(':')[0]);
            expect(e.end).toEqual(specs[s].positions ? pos(Number(e.rejected.raw.split(':')[1])) : undefined);
            continue;
          }
          if (e.kind !== 'trades') continue;
          const n = e.trades.length;
          const s = Number(tradeAt(e.trades, 0).tradeId!.split(':')[0]);
          expect(e.source).toBe(`replay:s${s}`);
          expect(e.receivedAt).toBe(1000 + s);
          [...e.trades].forEach((t, i) => {
            const want = input.get(t.tradeId!)!;
            expect(e.origins!.raw(i)).toBe(want.raw);
            expect(e.origins!.where(i)).toBe(want.where);
            expect(e.origins!.position?.(i)).toEqual(want.position);
          });
          if (specs[s].positions) {
            expect(e.end).toEqual(input.get(tradeAt(e.trades, n - 1).tradeId!)!.position);
          } else {
            expect(e.origins!.position).toBeUndefined();
            expect('end' in e).toBe(false);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('resumes exactly: merging each stream\'s rest (from the end of its last event out) continues the uninterrupted merge', async () => {
    await fc.assert(
      fc.asyncProperty(streamsArb({ positions: true }), fc.nat(), fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 5 }), async (specs, cutSeed, newSizes) => {
        const { recs, events } = eventsOf(specs);
        const out = await merge(events);
        const cut = cutSeed % (out.length + 1);
        // Where each stream's reading goes on after the cut: the end of its last event out (stored for a restart).
        const resumeAt = recs.map(() => 0);
        for (const e of out.slice(0, cut)) {
          if (e.kind === 'trades') resumeAt[Number(e.source.slice('replay:s'.length))] = e.end!.line;
          else if (e.kind === 'rejected') resumeAt[Number(e.rejected.raw.split(':')[0])] = e.end!.line; // line of the last record read = index of the first not read
        }
        const rests = recs.map((r, s) => r.slice(resumeAt[s]));
        const after = flatIds(out.slice(cut));
        // Cut into events the original way (the rest of a cut event is one event): the same events.
        const sameCut = rests.map((rest, s) => {
          const groups = chunk(recs[s], specs[s].sizes)
            .map((g) => g.filter((r) => r.idx >= resumeAt[s]))
            .filter((g) => g.length > 0);
          expect(groups.flat()).toEqual(rest);
          return toEvents(s, groups, true);
        });
        expect((await merge(sameCut)).map(describeEvent)).toEqual(out.slice(cut).map(describeEvent));
        // Re-read in other pieces (a restart reads from a position, in pieces of its own): the same records.
        const otherCut = rests.map((rest, s) => toEvents(s, chunk(rest, newSizes), true));
        expect(flatIds(await merge(otherCut))).toEqual(after);
      }),
      { numRuns: 200 },
    );
  });

  it('passes one stream through unchanged, and whole events unchanged when files follow each other', async () => {
    const { events } = eventsOf([
      { steps: Array(20).fill(1), start: 0, sizes: [4], positions: true },
      { steps: Array(20).fill(1), start: 100, sizes: [5], positions: true },
    ]);
    const one = await merge([events[0]]);
    expect(one).toHaveLength(events[0].length);
    one.forEach((e, i) => expect(e).toBe(events[0][i]));
    const two = await merge(events);
    expect(two).toHaveLength(events[0].length + events[1].length);
    two.forEach((e, i) => expect(e).toBe([...events[0], ...events[1]][i]));
    expect(await merge([])).toEqual([]);
  });

  it('cuts runs where another stream\'s head comes first, ties to the lower index', async () => {
    // Stream 0: 1 2 3 5 | stream 1: 3 4 (one event each).
    const specs: StreamSpec[] = [
      { steps: [1, 1, 1, 2], start: 0, sizes: [10], positions: true },
      { steps: [3, 1], start: 0, sizes: [10], positions: true },
    ];
    const { events } = eventsOf(specs);
    const out = (await merge(events)) as TradesEvent[];
    expect(out.map((e) => e.trades.map((t) => t.tradeId))).toEqual([['0:0', '0:1', '0:2'], ['1:0', '1:1'], ['0:3']]);
    expect(out.map((e) => e.end)).toEqual([pos(2), pos(1), pos(3)]);
    // The slice from inside an event is re-indexed.
    expect(out[2].origins!.raw(0)).toBe('raw 0:3');
    expect(out[2].origins!.where(0)).toBe('line 4');
    // Swapped (stream 0 is now 1:.., stream 1 is 0:..): the tie at 3 goes to 1:0, the lower index.
    const swapped = (await merge([events[1], events[0]])) as TradesEvent[];
    expect(swapped.map((e) => e.trades.map((t) => t.tradeId))).toEqual([['0:0', '0:1'], ['1:0'], ['0:2'], ['1:1'], ['0:3']]);
    expect(swapped.map((e) => e.trades.map((t) => t.tradeId))).toEqual([['0:0', '0:1'], ['1:0'], ['0:2', '0:3']].map((ids) => ids.map((x) => x.replace(/^(\d)/, (d) => String(1 - Number(d))))).map((ids, i) => (i === 1 ? ['1:0'] : ids)).map((ids, i) => (i === 0 ? ['0:0', '0:1', '0:2'] : i === 2 ? ['1:0', '1:1', '0:3'] : ids)) ? swapped.map((e) => e.trades.map((t) => t.tradeId)) : []);
  });

  it('emits rejects as soon as they head their stream', async () => {
    const { events } = eventsOf([
      { steps: [5, null, 5], start: 0, sizes: [10], positions: true }, // 5, a reject, 10
      { steps: [null, 1, 1, 1, 1, 1, 1, 1], start: 0, sizes: [10], positions: true }, // a reject, then 1..7
    ]);
    // 1:0 (a reject) at once; 1's trades up to 4 (5 ties with 0:0, which goes first); 0:1 (a reject) at once; 1's up to 7 (< 10).
    expect(flatIds(await merge(events))).toEqual(['1:0', '1:1', '1:2', '1:3', '1:4', '0:0', '0:1', '1:5', '1:6', '1:7', '0:2']);
  });

  it('closes every input when closed early', async () => {
    const closed: number[] = [];
    const stream = (s: number, events: SourceEvent[]) =>
      (async function* () {
        try {
          yield* deliver(events, [1]);
        } finally {
          closed.push(s);
        }
      })();
    const { events } = eventsOf([0, 1, 2].map((s) => ({ steps: Array(30).fill(1), start: s, sizes: [3], positions: true })));
    let n = 0;
    for await (const _ of mergeByEventTime(events.map((e, s) => stream(s, e)))) if (++n === 4) break;
    expect(closed.sort()).toEqual([0, 1, 2]);
  });
});

describe('sliceTrades', () => {
  it('keeps position absent when the origins have none, and end absent inside such an event', () => {
    const [events] = eventsOf([{ steps: [1, 1, 1], start: 0, sizes: [3], positions: false }]).events;
    const e = events[0] as TradesEvent;
    const mid = sliceTrades(e, 1, 2);
    expect(mid.origins!.position).toBeUndefined();
    expect('end' in mid).toBe(false);
    expect(mid.origins!.raw(0)).toBe('raw 0:1');
    expect(sliceTrades(e, 0, 3)).toBe(e);
    expect(sliceTrades(e, 0, 3, 5).receivedAt).toBe(5);
  });
});

// ---- paceByEventTime ----------------------------------------------------------------------------

/** A ManualClock that moves itself forward by exactly each sleep asked of it (virtual time, no waiting). */
class SelfMovingClock extends ManualClock {
  sleeps: number[] = [];
  override sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    const p = super.sleep(ms, signal);
    this.advance(ms);
    return p;
  }
}

async function paced(events: SourceEvent[], speed: number, clock: ManualClock) {
  const out: { at: number; event: SourceEvent }[] = [];
  for await (const event of paceByEventTime(deliver(events), { speed, clock, signal: new AbortController().signal })) out.push({ at: clock.now(), event });
  return out;
}

describe('paceByEventTime', () => {
  /** Stream 0's trades at these offsets from its start, in events of these sizes. */
  const tradesAt = (offsets: number[], sizes: number[]) =>
    eventsOf([{ steps: offsets.map((o, i) => (i === 0 ? o : o - offsets[i - 1])), start: 0, sizes, positions: true }]).events[0];

  it('plays trades at their event time, cutting an event where a wait is needed', async () => {
    // One event: +0 +3 (under 5 ms: no wait) +100 +101 +300; then a reject, then +1000 alone.
    const events = tradesAt([0, 3, 100, 101, 300, 1000], [5, 1]);
    events.splice(1, 0, { kind: 'rejected', rejected: { receivedAt: 1, source: 'x', reason: 'malformed', detail: '', raw: 'bad' } });
    const clock = new SelfMovingClock(50_000);
    const out = await paced(events, 1, clock);
    const view = out.map(({ at, event }) => (event.kind === 'trades' ? { at: at - 50_000, ids: event.trades.map((t) => t.tradeId), receivedAt: event.receivedAt, end: event.end } : { at: at - 50_000, kind: event.kind }));
    expect(view).toEqual([
      { at: 0, ids: ['0:0', '0:1'], receivedAt: 1000, end: pos(1) },
      { at: 100, ids: ['0:2', '0:3'], receivedAt: 50_100, end: pos(3) },
      { at: 300, ids: ['0:4'], receivedAt: 50_300, end: pos(4) },
      { at: 300, kind: 'rejected' },
      { at: 1000, ids: ['0:5'], receivedAt: 51_000, end: pos(5) },
    ]);
    expect(clock.sleeps).toEqual([100, 200, 700]);
    const second = out[1].event as TradesEvent;
    expect([second.origins!.raw(1), second.origins!.where(1), second.origins!.position!(1)]).toEqual(['raw 0:3', 'line 4', pos(3)]);
  });

  it('runs at `speed` times real time', async () => {
    const clock = new SelfMovingClock(0);
    const out = await paced(tradesAt([0, 1000, 3000], [3]), 10, clock);
    expect(out.map(({ at }) => at)).toEqual([0, 100, 300]);
  });

  it('passes everything through unchanged at speed Infinity', async () => {
    const events = tradesAt([0, 1000, 3000, 90_000], [2]);
    const clock = new SelfMovingClock(0);
    const out = await paced(events, Infinity, clock);
    expect(out.map((o) => o.event)).toEqual(events);
    out.forEach((o, i) => expect(o.event).toBe(events[i]));
    expect(clock.sleeps).toEqual([]);
  });

  it('never plays a trade 5 ms or more early, waits exactly until due, and loses, adds or re-labels nothing', async () => {
    await fc.assert(
      fc.asyncProperty(streamsArb({ positions: true }), fc.constantFrom(0.5, 1, 3, 100), async (specs, speed) => {
        // Wider steps, so that some need a wait.
        const wide = specs.map((s) => ({ ...s, steps: s.steps.map((x) => (x === null ? null : x * 7)) }));
        const { events } = eventsOf(wide);
        const merged = await merge(events);
        const clock = new SelfMovingClock(1_000_000);
        const out = await paced(merged, speed, clock);
        expect(flatIds(out.map((o) => o.event))).toEqual(flatIds(merged));
        // Every trade keeps its origins through both cuts (a slice of a slice).
        const originsOf = (events: SourceEvent[]) => events.flatMap((e) => (e.kind === 'trades' ? describeEvent(e).trades! : []));
        expect(originsOf(out.map((o) => o.event))).toEqual(originsOf(merged));
        const trades = merged.flatMap((e) => (e.kind === 'trades' ? [...e.trades] : []));
        if (trades.length === 0) return;
        const first = trades[0].timestamp;
        for (const { at, event } of out) {
          if (event.kind !== 'trades') continue;
          expect(event.trades.length).toBeGreaterThan(0);
          const due = (t: Trade) => 1_000_000 + (t.timestamp - first) / speed;
          for (const t of event.trades) expect(due(t) - at).toBeLessThan(5);
          // After a wait (receivedAt from the clock, not the input's 1000 + stream), its first trade is due right then.
          if (event.receivedAt! >= 1_000_000) {
            expect(event.receivedAt).toBe(at);
            expect(due(tradeAt(event.trades, 0))).toBe(at);
          }
          const d = describeEvent(event) as { end: SourcePosition; trades: { position: SourcePosition }[] };
          expect(d.end).toEqual(d.trades[d.trades.length - 1].position);
        }
      }),
      { numRuns: 100 },
    );
  });

  it('ends quietly when aborted while waiting, closing its input', async () => {
    let closed = false;
    const events = tradesAt([0, 10_000], [2]);
    const input = (async function* () {
      try {
        yield* events;
      } finally {
        closed = true;
      }
    })();
    const clock = new ManualClock(0);
    const abort = new AbortController();
    const gen = paceByEventTime(input, { speed: 1, clock, signal: abort.signal });
    const first = await gen.next();
    expect((first.value as TradesEvent).trades.map((t) => t.tradeId)).toEqual(['0:0']);
    const waiting = gen.next();
    await turns(4);
    abort.abort();
    expect(await waiting).toEqual({ done: true, value: undefined });
    expect(closed).toBe(true);
  });
});
