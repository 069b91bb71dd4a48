// Plays a stream of events (the event-time merge of replay files) at `speed` x real time by event
// time, as ReplaySource does for one file: the first trade's event time is played when it is
// reached, and each later trade at start + (its time - the first's) / speed.
import type { Clock } from '../core/clock.js';
import { CoinstreamError } from '../core/errors.js';
import { timestampAt } from '../core/trade-columns.js';
import type { SourceEvent } from './contract.js';
import { sliceTrades } from './merge.js';

/** Waits shorter than this are skipped: timers are not that precise and trades come in bursts. */
const MIN_SLEEP_MS = 5;

export interface PaceOptions {
  /** Times real time; Infinity passes the events on as they come. */
  speed: number;
  clock: Clock;
  /** Aborting it while waiting ends the stream quietly. */
  signal: AbortSignal;
}

/**
 * The events at `speed` x real time. A trades event is cut where a wait is needed (slices as
 * sliceTrades makes them); the part after a wait gets receivedAt = the clock's time then. Other
 * events go on at once.
 */
export async function* paceByEventTime(events: AsyncIterable<SourceEvent>, o: PaceOptions): AsyncGenerator<SourceEvent> {
  const { speed, clock, signal } = o;
  if (!(speed > 0)) throw new CoinstreamError('CONFIG', `--speed must be "max" or a number > 0, got ${speed}`);
  if (speed === Infinity) {
    yield* events;
    return;
  }
  let firstEventTime = NaN;
  let startedAt = NaN;
  for await (const event of events) {
    if (event.kind !== 'trades' || event.trades.length === 0) {
      yield event;
      continue;
    }
    const trades = event.trades;
    if (Number.isNaN(firstEventTime)) {
      firstEventTime = timestampAt(trades, 0);
      startedAt = clock.now();
    }
    let now = clock.now();
    // Trades from `from` on go out together, with receivedAt `receivedAt` when set (after a wait).
    let from = 0;
    let receivedAt: number | undefined;
    for (let i = 0; i < trades.length; i++) {
      const dueAt = startedAt + (timestampAt(trades, i) - firstEventTime) / speed;
      if (dueAt - now < MIN_SLEEP_MS) continue;
      if (i > from) {
        yield sliceTrades(event, from, i, receivedAt);
        from = i;
      }
      // Measured again after the yield: the consumer's time counts as waited.
      const wait = dueAt - clock.now();
      if (wait >= MIN_SLEEP_MS) {
        try {
          await clock.sleep(wait, signal);
        } catch {
          return; // aborted while waiting: the signal is the reason, nothing to report
        }
      }
      now = clock.now();
      receivedAt = now;
    }
    yield sliceTrades(event, from, trades.length, receivedAt);
  }
}
