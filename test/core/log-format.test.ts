import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/core/errors.js';
import { formatLogLine, prettyDestination } from '../../src/core/log-format.js';
import { createLogger, type LogOutput } from '../../src/core/logger.js';

const ANSI = /\x1b\[/;

/** A real pino logger writing through the pretty destination into an array. */
function prettyLogger(colour = false) {
  const lines: string[] = [];
  const logger = pino({ level: 'trace', base: { app: 'coinstream' }, timestamp: pino.stdTimeFunctions.isoTime }, prettyDestination({ colour, write: (l) => lines.push(l) }));
  return { logger, lines };
}

/** A stand-in for stderr: no real terminal involved. */
function fakeOutput(isTTY: boolean, hasColors = false): LogOutput & { lines: string[] } {
  const lines: string[] = [];
  return { isTTY, hasColors: () => hasColors, write: (l) => void lines.push(l), lines };
}

describe('formatLogLine / prettyDestination', () => {
  it('writes one line per event: time, padded level, message, key=value', () => {
    const { logger, lines } = prettyLogger();
    logger.info({ exchange: 'kraken', trades: 42, note: 'two words', ok: true }, 'feed connected');
    logger.warn('slow');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO  feed connected exchange=kraken trades=42 note="two words" ok=true\n$/);
    expect(lines[1]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN  slow\n$/);
    expect(lines.join('')).not.toMatch(/app=|pid=|hostname=|level=|time=/);
    expect(ANSI.test(lines.join(''))).toBe(false);
  });

  it('renders the time of the event (local time)', () => {
    const t = new Date(2024, 0, 2, 3, 4, 5, 67);
    expect(formatLogLine(JSON.stringify({ level: 20, time: t.toISOString(), msg: 'm' }), false)).toBe('03:04:05.067 DEBUG m');
    expect(formatLogLine(JSON.stringify({ level: 10, time: t.getTime(), msg: 'm' }), false)).toBe('03:04:05.067 TRACE m');
  });

  it('renders nested objects as compact JSON, capped with an ellipsis', () => {
    const { logger, lines } = prettyLogger();
    logger.info({ pairs: ['BTC/USD', 'ETH/USD'], cfg: { a: { b: 1 } }, big: Array.from({ length: 100 }, (_, i) => i) }, 'm');
    expect(lines[0]).toContain('pairs=["BTC/USD","ETH/USD"] cfg={"a":{"b":1}} big=[0,1,2,');
    const big = lines[0].split('big=')[1].trimEnd();
    expect(big).toHaveLength(201);
    expect(big.endsWith('…')).toBe(true);
  });

  it('says [too deep] instead of throwing on a value too deep to stringify', () => {
    const deep = '{"level":30,"msg":"m","v":' + '['.repeat(200_000) + ']'.repeat(200_000) + '}';
    expect(formatLogLine(deep, false)).toBe('INFO  m v=[too deep]');
  });

  it('renders err as its message, with the stack only at level >= error', () => {
    const { logger, lines } = prettyLogger();
    logger.warn({ err: new Error('socket hang up') }, 'retrying');
    logger.error({ err: new Error('store refused') }, 'write failed');
    expect(lines[0]).toMatch(/WARN  retrying err="socket hang up"\n$/);
    const [first, ...rest] = lines[1].trimEnd().split('\n');
    expect(first).toMatch(/ERROR write failed err="store refused"$/);
    expect(rest[0]).toBe('Error: store refused');
    expect(rest[1]).toMatch(/^\s+at /);
  });

  it('colours the level and dims the keys only when asked', () => {
    const plain = prettyLogger(false);
    const coloured = prettyLogger(true);
    for (const { logger } of [plain, coloured]) {
      logger.error({ k: 1 }, 'bad');
      logger.info({ k: 1 }, 'fine');
    }
    expect(ANSI.test(plain.lines.join(''))).toBe(false);
    expect(coloured.lines[0]).toContain('\x1b[31mERROR\x1b[0m');
    expect(coloured.lines[1]).toContain('\x1b[32mINFO \x1b[0m');
    expect(coloured.lines[1]).toContain('\x1b[2mk=\x1b[22m1');
  });

  it('passes a line it cannot parse through as is', () => {
    const lines: string[] = [];
    const dest = prettyDestination({ colour: true, write: (l) => lines.push(l) });
    dest.write('not json {\n');
    dest.write('[1,2]\n');
    expect(lines).toEqual(['not json {\n', '[1,2]\n']);
    expect(formatLogLine('', false)).toBe('');
    expect(formatLogLine('null', false)).toBe('null');
  });
});

describe('createLogger', () => {
  it('writes JSON lines in json mode, even on a terminal', () => {
    const out = fakeOutput(true, true);
    createLogger({ format: 'json', env: {}, output: out }).info({ n: 1 }, 'hello');
    const record = JSON.parse(out.lines[0]);
    expect(out.lines[0]).toContain('"app":"coinstream"');
    expect(record).toMatchObject({ level: 30, app: 'coinstream', n: 1, msg: 'hello' });
    expect(record.time).toMatch(/^\d{4}-\d\d-\d\dT.*Z$/);
  });

  it('auto: pretty on a terminal, JSON elsewhere; format and level from the environment', () => {
    const tty = fakeOutput(true);
    createLogger({ env: {}, output: tty }).info('hi');
    expect(tty.lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO  hi\n$/);

    const pipe = fakeOutput(false);
    createLogger({ env: {}, output: pipe }).info('hi');
    expect(JSON.parse(pipe.lines[0]).msg).toBe('hi');

    const viaEnv = fakeOutput(false);
    const logger = createLogger({ env: { COINSTREAM_LOG_FORMAT: 'pretty', COINSTREAM_LOG_LEVEL: 'warn' }, output: viaEnv });
    logger.info('hidden');
    logger.warn('shown');
    expect(viaEnv.lines).toHaveLength(1);
    expect(viaEnv.lines[0]).toMatch(/WARN  shown\n$/);
  });

  it('colours when the terminal can, never with NO_COLOR, always with FORCE_COLOR', () => {
    const line = (env: NodeJS.ProcessEnv, hasColors: boolean) => {
      const out = fakeOutput(true, hasColors);
      createLogger({ env, output: out }).info('x');
      return out.lines[0];
    };
    expect(line({}, true)).toMatch(ANSI);
    expect(line({}, false)).not.toMatch(ANSI);
    expect(line({ NO_COLOR: '1' }, true)).not.toMatch(ANSI);
    expect(line({ FORCE_COLOR: '1' }, false)).toMatch(ANSI);
    expect(line({ FORCE_COLOR: '0' }, false)).not.toMatch(ANSI);
    expect(line({ NO_COLOR: '1', FORCE_COLOR: '1' }, true)).not.toMatch(ANSI);
  });

  it('accepts the level as a plain string (the DuckDB worker does that)', () => {
    expect(createLogger('debug').level).toBe('debug');
  });

  it('throws a UsageError that says what to do on an unknown level or format', () => {
    const out = fakeOutput(false);
    expect(() => createLogger({ env: { COINSTREAM_LOG_LEVEL: 'loud' }, output: out })).toThrow(
      new UsageError('COINSTREAM_LOG_LEVEL "loud" is not a log level; use one of trace, debug, info, warn, error, fatal, silent'),
    );
    expect(() => createLogger({ env: { COINSTREAM_LOG_FORMAT: 'fancy' }, output: out })).toThrow(
      'COINSTREAM_LOG_FORMAT "fancy" is not a log format; use one of auto, json, pretty',
    );
    expect(() => createLogger({ format: 'xml', env: {}, output: out })).toThrow(UsageError);
    expect(() => createLogger('loud')).toThrow(/log level "loud" is not a log level; use one of trace/);
  });
});
