// Logs go to stderr, so stdout stays clean for the console sink and `query`. On a terminal they are
// human lines (see log-format.ts); anywhere else JSON lines (pino) for machines.
// COINSTREAM_LOG_LEVEL=trace|debug|info|warn|error|fatal|silent (default info)
// COINSTREAM_LOG_FORMAT=auto|json|pretty (default auto: pretty when stderr is a terminal)
// Colour (pretty only) follows the terminal; NO_COLOR turns it off, FORCE_COLOR turns it on.
import { pino, type Logger } from 'pino';
import { UsageError } from './errors.js';
import { prettyDestination } from './log-format.js';

export type { Logger };

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Where the lines go. The default is fd 2, written synchronously so no line is lost on exit. */
export interface LogOutput {
  isTTY?: boolean;
  hasColors?(): boolean;
  write(line: string): void;
}

export interface LoggerOptions {
  level?: string;
  format?: string;
  /** For tests; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** For tests; default stderr. */
  output?: LogOutput;
  /** Colour in pretty mode; default: what the terminal and the environment say. */
  colour?: boolean;
}

/** A string is the level; the format then comes from the environment. */
export function createLogger(options: string | LoggerOptions = {}): Logger {
  const opts = typeof options === 'string' ? { level: options } : options;
  const env = opts.env ?? process.env;
  const level = pick(opts.level, env, 'COINSTREAM_LOG_LEVEL', 'info', LOG_LEVELS, 'log level');
  const format = pick(opts.format, env, 'COINSTREAM_LOG_FORMAT', 'auto', LOG_FORMATS, 'log format');

  // pino.destination is sonic-boom in sync mode: it retries EAGAIN on a non-blocking stderr.
  const fd2 = opts.output ? undefined : pino.destination({ fd: 2, sync: true });
  const output: LogOutput = opts.output ?? {
    isTTY: process.stderr.isTTY,
    hasColors: () => process.stderr.hasColors?.() ?? false,
    write: (line) => fd2!.write(line),
  };
  const pretty = format === 'pretty' || (format === 'auto' && output.isTTY === true);
  const colour = pretty && (opts.colour ?? wantsColour(env, output));
  const stream = pretty
    ? prettyDestination({ colour, write: (line) => output.write(line) })
    : (fd2 ?? { write: (line: string) => output.write(line) });
  const logger = pino({ level, base: { app: 'coinstream' }, timestamp: pino.stdTimeFunctions.isoTime }, stream);
  return logger;
}

export const silentLogger: Logger = pino({ level: 'silent' });

function wantsColour(env: NodeJS.ProcessEnv, output: LogOutput): boolean {
  if (env.NO_COLOR) return false; // https://no-color.org: any non-empty value
  if (env.FORCE_COLOR && env.FORCE_COLOR !== '0') return true;
  return output.hasColors?.() ?? false;
}

/** The option, else the environment variable, else the default; an unknown value is a UsageError. */
function pick<T extends string>(
  option: string | undefined,
  env: NodeJS.ProcessEnv,
  envName: string,
  fallback: T,
  allowed: readonly T[],
  what: string,
): T {
  const raw = option ?? (env[envName] || fallback); // an empty variable counts as unset
  const value = raw.trim().toLowerCase();
  if ((allowed as readonly string[]).includes(value)) return value as T;
  const source = option !== undefined ? what : envName;
  throw new UsageError(`${source} "${raw}" is not a ${what}; use one of ${allowed.join(', ')}`);
}
