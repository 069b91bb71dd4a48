// SOURCE SPEC (DESIGN.md): replay:PATH | synthetic[:TRADES_PER_S] | <feed>[:SYMBOLS][@URL]
import type { Clock } from '../core/clock.js';
import { UsageError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Source } from './contract.js';
import { ReplaySource } from './replay.js';
import { SyntheticSource } from './synthetic.js';

export interface SourceDeps {
  clock: Clock;
  logger: Logger;
  /** Replay pacing: Infinity for --speed max. */
  speed: number;
}

export const SOURCE_SPEC_HELP = 'replay:PATH | synthetic[:TRADES_PER_S] | coincap[:ASSETS][@URL] | coincap-prices:ASSETS | binance[:SYMBOLS][@URL] | coinbase[:PRODUCTS][@URL] | kraken[:PAIRS][@URL] | bybit[...] | okx[...]';

export function parseSourceSpec(spec: string, deps: SourceDeps): Source {
  const colon = spec.indexOf(':');
  const kind = colon === -1 ? spec : spec.slice(0, colon);
  const rest = colon === -1 ? '' : spec.slice(colon + 1);
  switch (kind) {
    case 'replay':
      if (!rest) throw new UsageError(`--source replay needs a file: --source replay:PATH.jsonl[.gz]`);
      return new ReplaySource({ path: rest, speed: deps.speed, clock: deps.clock });
    case 'synthetic': {
      const rate = rest === '' ? 10 : Number(rest);
      if (!(rate > 0) || !Number.isFinite(rate)) throw new UsageError(`--source synthetic:${rest}: the rate must be trades per second > 0, e.g. synthetic:50`);
      return new SyntheticSource(rate, deps.clock);
    }
    default:
      return parseFeedSpec(spec, deps);
  }
}

const LIVE_FEEDS = ['coincap', 'coincap-prices', 'binance', 'coinbase', 'kraken', 'bybit', 'okx'];

/** Live feeds are plugged in by the feeds registry; until one matches, the spec is a usage error. */
let parseFeedSpec = (spec: string, _deps: SourceDeps): Source => {
  const kind = spec.split(/[:@]/)[0];
  if (LIVE_FEEDS.includes(kind)) {
    throw new UsageError(`live feeds (${kind}) are not in this version yet: try \`npm run demo\` to replay real recorded trades, or --source replay:FILE`);
  }
  throw new UsageError(`unknown source "${spec}"; a source is one of: ${SOURCE_SPEC_HELP}`);
};

export function setFeedSpecParser(parser: (spec: string, deps: SourceDeps) => Source): void {
  parseFeedSpec = parser;
}

export function parseSpeed(text: string): number {
  if (text === 'max') return Infinity;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--speed "${text}" must be "max" or a number > 0 (times real time), e.g. --speed 60`);
  return n;
}

/** What `coinstream run` reads with no --source: bitcoin and ethereum, keyless, as the original did. */
export const DEFAULT_LIVE_SOURCES = ['binance:btcusdt,ethusdt', 'coinbase:BTC-USD,ETH-USD'];
