// Capped exponential backoff, the one schedule behind every retry: reconnecting a feed, retrying a
// store's write, reconnecting to a database server.

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
}

/**
 * The delay before retry n (1-based): initialMs * factor^(n-1), capped at maxMs. With `random`, "equal
 * jitter": half of it fixed, half random, so many clients restarting together do not retry in step;
 * without, the full delay.
 */
export function backoffDelay(failures: number, b: BackoffOptions, random?: () => number): number {
  const exp = Math.min(b.maxMs, b.initialMs * b.factor ** Math.max(0, failures - 1));
  return random ? Math.round(exp / 2 + random() * (exp / 2)) : exp;
}
