// SOURCE SPEC (DESIGN.md): replay:PATH | synthetic[:TRADES_PER_S] | <feed>[:SYMBOLS][@URL]
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Clock } from '../core/clock.js';
import { UsageError } from '../core/errors.js';
import { userPath } from '../core/paths.js';
import { firstRepeat } from '../core/repeats.js';
import type { Logger } from '../core/logger.js';
import { SOURCE_SPEC_HELP, type Source } from './contract.js';
import { ReplaySource } from './replay.js';
import { SyntheticSource } from './synthetic.js';

/**
 * What `coinstream run` reads with no --source: bitcoin and ethereum, keyless, as the original did.
 * (Kept here, not taken from the feed registry, so that a replay loads no feed module.)
 */
export const DEFAULT_LIVE_SOURCES = ['binance:btcusdt,ethusdt', 'coinbase:BTC-USD,ETH-USD'];

export interface SourceDeps {
  clock: Clock;
  logger: Logger;
  /** Longest replay line (and websocket frame) accepted; default 1 MiB. */
  maxLineBytes?: number;
}

export { SOURCE_SPEC_HELP };

/**
 * Every --source, in order. The feed modules (websocket client, their metrics) are loaded only when a
 * spec names a feed: a replay skips ~45 ms of imports on its way to the first trade.
 */
export async function parseSourceSpecs(specs: string[], deps: SourceDeps): Promise<Source[]> {
  const feeds = specs.some((spec) => !isBuiltIn(spec)) ? await import('./feeds/registry.js') : null;
  const sources = specs.map((spec) => (isBuiltIn(spec) || feeds === null ? parseBuiltIn(spec, deps) : parseFeedSpec(spec, deps, feeds)));
  refuseRepeats(sources);
  return sources;
}

/**
 * The same source twice would count its trades twice, and a job's progress keeps one position per
 * source name, so a resumed job could not tell the two apart. A replay file is the same file however
 * it is reached: its path spelled otherwise (./a.jsonl, an absolute path), a symbolic or a hard link
 * (the file's device and inode, where it is there to ask).
 */
function refuseRepeats(sources: Source[]): void {
  const found = firstRepeat(sources, (source) => (source instanceof ReplaySource ? `replay:${fileIdentity(source.path)}` : source.name));
  if (found) throw new UsageError(`--source ${found.repeat.name} repeats --source ${found.earlier.name}: its trades would be counted twice; give each source once`);
}

function fileIdentity(path: string): string {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return resolve(path); // not there: the source says so when it opens
  }
}

const kindOf = (spec: string) => (spec.indexOf(':') === -1 ? spec : spec.slice(0, spec.indexOf(':')));
const isBuiltIn = (spec: string) => kindOf(spec) === 'replay' || kindOf(spec) === 'synthetic';

/** The fastest synthetic source: trades per second. */
const MAX_SYNTHETIC_RATE = 1_000_000;

function parseBuiltIn(spec: string, deps: SourceDeps): Source {
  const colon = spec.indexOf(':');
  const kind = colon === -1 ? spec : spec.slice(0, colon);
  const rest = colon === -1 ? '' : spec.slice(colon + 1);
  switch (kind) {
    case 'replay':
      if (!rest) throw new UsageError(`--source replay needs a file: --source replay:PATH.jsonl[.gz]`);
      return new ReplaySource({ path: userPath(rest), clock: deps.clock, maxLineBytes: deps.maxLineBytes });
    case 'synthetic': {
      const rate = rest === '' ? 10 : Number(rest);
      // Capped: each 100 ms tick builds its trades at once, and synthetic:1e9 grew the heap by ~400 MB/s
      // until it ran out. A million a second is more than any feed sends, and stays ~300 MB.
      if (!(rate > 0) || rate > MAX_SYNTHETIC_RATE) throw new UsageError(`--source synthetic:${rest}: the rate must be trades per second, > 0 and at most ${MAX_SYNTHETIC_RATE.toLocaleString('en-US')}, e.g. synthetic:50`);
      return new SyntheticSource(rate, deps.clock);
    }
    default:
      throw new Error(`not a built-in source: ${spec}`);
  }
}

function parseFeedSpec(spec: string, deps: SourceDeps, { createFeedSource, parseFeedSpec: parseFeed }: typeof import('./feeds/registry.js')): Source {
  const feed = parseFeed(spec);
  if (!feed) throw new UsageError(`unknown source "${spec}"; a source is one of: ${SOURCE_SPEC_HELP}`);
  return createFeedSource(feed.kind, feed.symbols, feed.url, { clock: deps.clock, logger: deps.logger, maxFrameBytes: deps.maxLineBytes });
}

export function parseSpeed(text: string): number {
  if (text === 'max') return Infinity;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--speed "${text}" must be "max" or a number > 0 (times real time), e.g. --speed 60`);
  return n;
}
