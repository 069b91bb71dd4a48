// Reads several sources at once: live feeds in the order their events arrive (mergeEvents), bounded
// ones (replay files) as one stream by event time (mergeByEventTime).
import { timestampAt } from '../core/trade-columns.js';
import type { SourceEvent, SourcePosition, TradeOrigins } from './contract.js';

export async function* mergeEvents(streams: AsyncIterable<SourceEvent>[]): AsyncGenerator<SourceEvent> {
  if (streams.length === 1) {
    yield* streams[0];
    return;
  }
  const iterators = streams.map((s) => s[Symbol.asyncIterator]());
  const next = (i: number) => iterators[i].next().then((result) => ({ i, result }));
  const pending = new Map<number, Promise<{ i: number; result: IteratorResult<SourceEvent> }>>();
  iterators.forEach((_, i) => pending.set(i, next(i)));
  try {
    while (pending.size > 0) {
      const { i, result } = await Promise.race(pending.values());
      if (result.done) {
        pending.delete(i);
        continue;
      }
      pending.set(i, next(i));
      yield result.value;
    }
  } finally {
    // Closing early (abort, --batches): let every source release its socket or file.
    await Promise.allSettled(iterators.map((it) => it.return?.()));
  }
}

type TradesEvent = Extract<SourceEvent, { kind: 'trades' }>;

/**
 * Trades from..to-1 of a trades event as an event of their own: same source and receivedAt (or
 * `receivedAt` when given), origins re-indexed to the slice, and `end` = the position after the
 * slice's last trade when it stops inside the event (absent when the origins carry no positions),
 * else the event's own `end`. The whole event, with no new receivedAt, is returned as it is.
 */
export function sliceTrades(event: TradesEvent, from: number, to: number, receivedAt?: number): TradesEvent {
  const n = event.trades.length;
  if (from === 0 && to === n && receivedAt === undefined) return event;
  const out: TradesEvent = { kind: 'trades', source: event.source, trades: from === 0 && to === n ? event.trades : event.trades.slice(from, to) };
  const at = receivedAt ?? event.receivedAt;
  if (at !== undefined) out.receivedAt = at;
  const origins = event.origins;
  // A slice from 0 keeps its indexes: the event's origins serve it as they are.
  if (origins !== undefined) out.origins = from === 0 ? origins : shiftOrigins(origins, from);
  const end = to === n ? event.end : origins?.position?.(to - 1);
  if (end !== undefined) out.end = end;
  return out;
}

/** Origins whose index 0 is the given origins' index `by`; `position` only where they have one. */
function shiftOrigins(origins: TradeOrigins, by: number): TradeOrigins {
  // A slice of a slice asks the first origins directly (a pacer cuts what the merge cut).
  if (origins instanceof ShiftedOrigins) {
    by += origins.by;
    origins = origins.base;
  }
  return origins.position === undefined ? new ShiftedOrigins(origins, by) : new ShiftedPositionedOrigins(origins, by);
}

// Classes, not closures: a run can be one trade long (files interleaved trade by trade), and an
// object with two fields is the cheapest thing to make per run.
class ShiftedOrigins implements TradeOrigins {
  constructor(
    readonly base: TradeOrigins,
    readonly by: number,
  ) {}
  raw(i: number): string {
    return this.base.raw(i + this.by);
  }
  where(i: number): string | undefined {
    return this.base.where(i + this.by);
  }
}

class ShiftedPositionedOrigins extends ShiftedOrigins {
  position(i: number): SourcePosition {
    return this.base.position!(i + this.by);
  }
}

/** One input of mergeByEventTime: its current event (consumed up to `pos`) or the next one being read. */
interface Input {
  it: AsyncIterator<SourceEvent>;
  event: SourceEvent | undefined;
  pos: number;
  next: Promise<IteratorResult<SourceEvent>> | undefined;
}

/**
 * Merges bounded streams (replay files), each roughly in event-time order, into ONE stream by event
 * time: a k-way merge whose output depends only on the streams' contents, never on timing, so that a
 * restart from each stream's stored position (the `end` of its last event out) continues exactly as
 * the uninterrupted merge did.
 *
 * Record by record it is the plain k-way merge: the next record out is the head of the stream with
 * the smallest key (a trade's timestamp; -Infinity for any other event and for an empty trades
 * event, which go out as soon as they head their stream), ties to the lower stream index, each
 * stream's order kept. To decide, it waits for the head of every unfinished stream. It emits runs:
 * from the winning stream's current trades event, the consecutive trades that would still win
 * against the other heads (one comparison each), as one slice of that event (see sliceTrades); a
 * run never crosses the event's end. A run that takes a whole event passes the event on unchanged.
 */
export async function* mergeByEventTime(streams: AsyncIterable<SourceEvent>[]): AsyncGenerator<SourceEvent> {
  if (streams.length <= 1) {
    if (streams.length === 1) yield* streams[0];
    return;
  }
  const inputs: Input[] = streams.map((s) => ({ it: s[Symbol.asyncIterator](), event: undefined, pos: 0, next: undefined }));
  const read = (input: Input) => {
    const next = input.it.next();
    next.catch(ignore); // awaited below; unobserved only when the merge closes early
    input.next = next;
  };
  for (const input of inputs) read(input);
  // Unfinished inputs, in stream-index order.
  let active = inputs;
  try {
    for (;;) {
      // The head of every unfinished stream (all reads run at once; only finished events are re-read).
      let finished = false;
      for (const input of active) {
        if (input.next === undefined) continue;
        const result = await input.next;
        input.next = undefined;
        if (result.done) finished = true;
        else {
          input.event = result.value;
          input.pos = 0;
        }
      }
      if (finished) active = active.filter((input) => input.event !== undefined);
      if (active.length === 0) return;
      // The winner m: the smallest head key, ties to the lower index.
      let m = 0;
      let mKey = headKey(active[0]);
      for (let j = 1; j < active.length; j++) {
        const key = headKey(active[j]);
        if (key < mKey) {
          m = j;
          mKey = key;
        }
      }
      const input = active[m];
      const event = input.event!;
      let out: SourceEvent;
      if (mKey === -Infinity) {
        out = event;
      } else {
        // Its trades go on while each is below every head before it (a tie yields to the lower index)
        // and not above any head after it: one bound, strict or not.
        let below = Infinity;
        for (let j = 0; j < m; j++) below = Math.min(below, headKey(active[j]));
        let upTo = Infinity;
        for (let j = m + 1; j < active.length; j++) upTo = Math.min(upTo, headKey(active[j]));
        const trades = (event as TradesEvent).trades;
        const n = trades.length;
        let to = input.pos + 1; // the head itself won
        if (below <= upTo) {
          while (to < n && timestampAt(trades, to) < below) to++;
        } else {
          while (to < n && timestampAt(trades, to) <= upTo) to++;
        }
        out = sliceTrades(event as TradesEvent, input.pos, to);
        input.pos = to;
      }
      if (out === event || input.pos === (event as TradesEvent).trades.length) {
        // The event is used up: read the next one while this one is consumed.
        input.event = undefined;
        read(input);
      }
      yield out;
    }
  } finally {
    // Closing early (abort, --batches): let every source release its file.
    await Promise.allSettled(inputs.map((input) => input.it.return?.()));
  }
}

function ignore(): void {}

/** The key of a stream's head: its next trade's timestamp; -Infinity for any other event. */
function headKey(input: Input): number {
  const event = input.event!;
  return event.kind === 'trades' && event.trades.length > 0 ? timestampAt(event.trades, input.pos) : -Infinity;
}
