// What every source produces: a stream of events. Trades travel in batches (a replay chunk, a
// websocket frame) so that the hot path pays one async step per batch, not per trade.
import type { RejectedTrade } from '../core/trade.js';
import type { TradeList } from '../core/trade-columns.js';

export type SourceEvent =
  /** Trades accepted by the source's parser, in arrival order. */
  | {
      kind: 'trades';
      source: string;
      /** Objects (live feeds, Kafka) or columns (a replay: see trade-columns.ts). */
      trades: TradeList;
      /** When they arrived, for trades that carry no receivedAt of their own. */
      receivedAt?: number;
      /** Where each trade came from, for the few that a later stage rejects (late), and its position. */
      origins?: TradeOrigins;
      /** Sources with positions (files): where reading goes on after this event's last trade. */
      end?: SourcePosition;
    }
  /**
   * Input the source could not turn into a trade; `end` as for trades, the position of `source` (the
   * reading source). `rejected.source` names where the input came from for the person reading
   * rejected_trades, which for a Kafka record is the source its producer read (the replay file), not
   * the partition whose position this is.
   */
  | { kind: 'rejected'; rejected: RejectedTrade; source?: string; end?: SourcePosition }
  /** Trade ids jumped: trades between `expected` and `received` never reached us. */
  | { kind: 'gap'; source: string; symbol: string; expected: string; received: string; at: number }
  | { kind: 'connected'; source: string; url: string; at: number }
  | { kind: 'disconnected'; source: string; reason: string; retryInMs: number; at: number }
  | { kind: 'heartbeat'; source: string; at: number }
  /** The source is damaged from here on (a truncated .gz): what came before was delivered, the rest cannot be. */
  | { kind: 'damaged'; source: string; detail: string; at: number }
  /** A price quote (CoinCap prices): not a trade, never aggregated into volume windows. */
  | { kind: 'price'; source: string; asset: string; priceUsd: number; at: number };

/**
 * The input behind the trades of one event. Asked only for trades rejected downstream, so a source
 * keeps references, not copies: the text is cut out when asked.
 */
export interface TradeOrigins {
  /** Trade i's input text, as received (a file's line, a websocket frame). */
  raw(i: number): string;
  /** Where trade i was in its source (`line 1234`), or undefined where a source has no positions. */
  where(i: number): string | undefined;
  /** Sources with positions: where reading goes on after trade i (a batch may be cut inside an event). */
  position?(i: number): SourcePosition;
}

/**
 * A place in a source to start reading again, right after a record (DESIGN.md, Recovery). For a file:
 * the byte offset after the record's line (in the decompressed text of a .gz) and that line's number,
 * so that line numbers in rejections go on as in an uninterrupted run.
 */
export interface SourcePosition {
  offset: number;
  line: number;
  /** A replay file's firstLineMark when it was read: a file replaced in place is refused on resume. */
  firstLine?: string;
  /** A .gz replay file's size when it was read: a finished job reads on once it has grown. */
  gzipBytes?: number;
}

export interface Source {
  /** Stable, human-readable name (`replay:data/x.jsonl`, `binance`). */
  readonly name: string;
  /** True when the source ends on its own (a file); false for live feeds. */
  readonly bounded: boolean;
  /**
   * Starts reading, from `from` where the source has positions (a file) and an earlier run stored
   * one; live sources ignore it. The iterable ends when the source is exhausted or the signal aborts.
   */
  events(signal: AbortSignal, from?: SourcePosition): AsyncIterable<SourceEvent>;
  /**
   * Unbounded sources that can be read again from a position (a Kafka partition): a restart loses
   * nothing. Live feeds cannot; files are bounded.
   */
  readonly replayable?: boolean;
  /**
   * Bounded sources that can grow (a Kafka partition read up to its end): whether there is more to read
   * after `position` (undefined: the job read none of it), so that a finished job goes on when there is.
   */
  moreAfter?(position: SourcePosition | undefined): boolean;
}

/** The SOURCE SPEC grammar (DESIGN.md), for --help and error messages; here so that --help loads no source. */
export const SOURCE_SPEC_HELP = 'replay:PATH | synthetic[:TRADES_PER_S] | coincap[:ASSETS][@URL] | coincap-prices:ASSETS | binance[:SYMBOLS][@URL] | coinbase[:PRODUCTS][@URL] | kraken[:PAIRS][@URL] | bybit[...] | okx[...]';
