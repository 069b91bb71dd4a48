import { UsageError } from './errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const MAX_DURATION_MS = 100_000 * 86_400_000;

/**
 * Parses a duration such as `1m`, `30s`, `300ms`, `1h30m`, `0`. A bare number other than 0 is refused:
 * `--window 60` is ambiguous (seconds? minutes?) and a wrong guess silently changes every result.
 */
export function parseDuration(text: string, flag = 'duration'): number {
  const trimmed = text.trim();
  if (trimmed === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(trimmed)) !== null) {
    total += Number(m[1]) * UNITS[m[2]];
    matched = re.lastIndex;
  }
  if (matched === 0 || matched !== trimmed.length || !Number.isFinite(total)) {
    throw new UsageError(`${flag}: "${text}" is not a duration; write it like 300ms, 30s, 1m, 1h, 1h30m or 7d`);
  }
  // Beyond this, milliseconds stop being exact integers (and SQL's BIGINT arithmetic overflows).
  if (total > MAX_DURATION_MS) throw new UsageError(`${flag}: "${text}" is longer than 100000 days; give a shorter duration`);
  return Math.round(total);
}

/** Formats milliseconds the way parseDuration reads them (60000 -> "1m"). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
