// Turns pino's JSON lines into one human line each, for a terminal:
//   12:03:04.567 INFO  feed connected exchange=kraken pairs=["BTC/USD","ETH/USD"]
// Written here rather than taken from pino-pretty: a few dozen lines, no extra dependency.
// The time is LOCAL time: someone reading a terminal compares it with their clock. The JSON mode
// keeps the ISO UTC time for machines.

/** A pino destination: pino calls write() with one JSON line (ending in '\n') per event. */
export interface LineDestination {
  write(chunk: string): void;
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const LEVEL_WIDTH = 5;
const ERROR_LEVEL = 50;
/** Fields every line has, or that the line shows in its own place: not repeated as key=value. */
const STANDARD = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'app']);
const MAX_JSON = 200;

const ESC = '\x1b[';
const RESET = `${ESC}0m`;
const LEVEL_COLOUR: Record<number, string> = { 10: `${ESC}90m`, 20: `${ESC}90m`, 30: `${ESC}32m`, 40: `${ESC}33m`, 50: `${ESC}31m`, 60: `${ESC}31m` };
const dim = (s: string) => `${ESC}2m${s}${ESC}22m`;

/**
 * One JSON log line -> one human line (plus the error's stack on the lines after it, at level >= error).
 * Never throws: a line that is not a JSON object comes back as it was.
 */
export function formatLogLine(json: string, colour: boolean): string {
  let record: unknown;
  try {
    record = JSON.parse(json);
  } catch {
    return json;
  }
  if (record === null || typeof record !== 'object' || Array.isArray(record)) return json;
  const r = record as Record<string, unknown>;
  const level = typeof r.level === 'number' ? r.level : 0;

  const parts: string[] = [];
  const time = clock(r.time);
  if (time) parts.push(time);
  const name = (LEVELS[level] ?? String(r.level ?? '?').toUpperCase()).padEnd(LEVEL_WIDTH);
  parts.push(colour && LEVEL_COLOUR[level] ? `${LEVEL_COLOUR[level]}${name}${RESET}` : name);
  // A message with a newline would break the one-line-per-event promise, so it is escaped.
  if (r.msg !== undefined) parts.push(String(r.msg).replace(/\r?\n/g, '\\n'));

  let stack = '';
  for (const [key, value] of Object.entries(r)) {
    if (STANDARD.has(key) || value === undefined) continue;
    let shown: string;
    if (key === 'err' && isErrorLike(value)) {
      shown = scalar(value.message);
      if (level >= ERROR_LEVEL && typeof value.stack === 'string') stack = value.stack;
    } else {
      shown = typeof value === 'object' && value !== null ? compactJson(value) : scalar(value);
    }
    parts.push(`${colour ? dim(`${key}=`) : `${key}=`}${shown}`);
  }
  return stack ? `${parts.join(' ')}\n${stack}` : parts.join(' ');
}

/** A pino destination that writes each event as a human line (ending in '\n') through `write`. */
export function prettyDestination(options: { colour: boolean; write: (line: string) => void }): LineDestination {
  return {
    write(chunk: string): void {
      // pino writes one event per call; splitting still keeps two events in one chunk apart.
      for (const line of chunk.split('\n')) {
        if (line !== '') options.write(`${formatLogLine(line, options.colour)}\n`);
      }
    },
  };
}

function clock(time: unknown): string | undefined {
  if (typeof time !== 'number' && typeof time !== 'string') return undefined;
  const d = new Date(time);
  if (Number.isNaN(d.getTime())) return String(time);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

function isErrorLike(v: unknown): v is { message: unknown; stack?: unknown } {
  return typeof v === 'object' && v !== null && 'message' in v;
}

/** Bare when it reads unambiguously; JSON-quoted when empty or holding spaces, quotes or '='. */
function scalar(v: unknown): string {
  if (typeof v !== 'string') return String(v);
  return v === '' || /[\s"'=\\]/.test(v) ? JSON.stringify(v) : v;
}

/**
 * Compact JSON, cut at MAX_JSON characters. The values came out of JSON.parse, so there are no cycles,
 * but JSON.stringify recurses and a deep enough value overflows the stack: that reads '[too deep]'.
 */
function compactJson(v: object): string {
  let text: string;
  try {
    text = JSON.stringify(v);
  } catch {
    return '[too deep]';
  }
  return text.length > MAX_JSON ? `${text.slice(0, MAX_JSON)}…` : text;
}
