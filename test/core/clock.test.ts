// The system clock's timers, under vitest's fake timers (which, like Node, fire a timer longer than
// 2^31 - 1 ms after 1 ms).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../src/core/clock.js';

const DAY = 86_400_000;

describe('systemClock', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('sleeps as long as asked past Node\'s 24.8-day timer limit (a replay at --speed 1 over a month\'s gap slept 1 ms)', async () => {
    let woke = false;
    const sleeping = systemClock.sleep(30 * DAY).then(() => (woke = true));
    await vi.advanceTimersByTimeAsync(1);
    expect(woke).toBe(false);
    await vi.advanceTimersByTimeAsync(25 * DAY);
    expect(woke).toBe(false);
    await vi.advanceTimersByTimeAsync(5 * DAY - 2);
    expect(woke).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await sleeping;
    expect(woke).toBe(true);
  });

  it('a long timer can be cancelled in its second piece, and a long sleep aborted', async () => {
    const fired = vi.fn();
    const timer = systemClock.setTimeout(fired, 40 * DAY);
    await vi.advanceTimersByTimeAsync(30 * DAY);
    timer.cancel();
    await vi.advanceTimersByTimeAsync(20 * DAY);
    expect(fired).not.toHaveBeenCalled();

    const stop = new AbortController();
    const sleeping = systemClock.sleep(40 * DAY, stop.signal);
    await vi.advanceTimersByTimeAsync(26 * DAY);
    stop.abort(new Error('stopped'));
    await expect(sleeping).rejects.toThrow('stopped');
  });
});
