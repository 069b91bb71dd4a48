// Options that may be given once each (--source, --sink): the first one that names the same thing again.

/** The first item whose key an earlier one had, with that earlier one; null when every key differs. */
export function firstRepeat<T>(items: readonly T[], keyOf: (item: T) => string): { earlier: T; repeat: T } | null {
  const seen = new Map<string, T>();
  for (const item of items) {
    const key = keyOf(item);
    const earlier = seen.get(key);
    if (earlier !== undefined) return { earlier, repeat: item };
    seen.set(key, item);
  }
  return null;
}
