// Trades by column: what a replay's scanner writes instead of a Trade object per line.
//
// Why: at replay speed a Trade object per line (an object and four boxed numbers) was the largest
// allocation of the pipeline's thread, and every stage after the scanner only copies its numbers on:
// the engine reads four of them, the batch builder copies them into its own columns. A TradeColumns
// holds a piece of a file's trades in typed arrays (one buffer per piece; its events are slices of it)
// and the strings once, in a key table shared by every piece of a source. Stages that want objects (the dashboard, Kafka ingest,
// a late trade's rejection) ask for one trade at a time with at(i), or iterate.
import type { TradeBatch, TradeKey } from '../sinks/contract.js';
import type { Direction, Trade } from './trade.js';

/** A TradeKey as one string, for maps keyed by it. */
export const tradeKeyText = (k: TradeKey) => `${k.exchange}\u0000${k.base}\u0000${k.quote}\u0000${k.direction}`;

/**
 * The distinct (exchange, base, quote, direction) of a source's trades (or of a batch for the sinks), by id: ids are stable and the
 * table only grows, so a consumer may keep what it derived from an id (TradeBatchBuilder's key ids).
 */
export class KeyTable {
  readonly keys: TradeKey[] = [];
  private readonly ids = new Map<string, number>();
  /** The keys of recent trades: a stream repeats a few (four assets interleaved, two directions). */
  private readonly recent: number[] = [];

  idOf(exchange: string, base: string, quote: string, direction: Direction): number {
    const { keys, recent } = this;
    for (let j = 0; j < recent.length; j++) {
      const k = keys[recent[j]];
      if (k.base === base && k.direction === direction && k.exchange === exchange && k.quote === quote) return recent[j];
    }
    const key = { exchange, base, quote, direction };
    const text = tradeKeyText(key);
    let id = this.ids.get(text);
    if (id === undefined) {
      id = keys.length;
      keys.push(key);
      this.ids.set(text, id);
    }
    if (recent.length === RECENT_KEYS) recent.shift();
    recent.push(id);
    return id;
  }
}

/** Keys tried before the map: eight covers four assets in both directions. */
const RECENT_KEYS = 8;

/**
 * The columns of trades, as a batch for the sinks holds them too (TradeBatch): `key` indexes a key
 * table; receivedAt is NaN where a trade has no receive time of its own; tradeId is null until some
 * trade has one.
 */
export type TradeColumnArrays = Pick<TradeBatch, 'key' | 'price' | 'volume' | 'timestamp' | 'priceUsd' | 'receivedAt' | 'tradeId'>;

/** Copies every row of `from` into the start of `to` (tradeId by reference: the array goes on growing in `to`). */
export function copyColumns(from: TradeColumnArrays, to: TradeColumnArrays): void {
  to.key.set(from.key);
  to.price.set(from.price);
  to.volume.set(from.volume);
  to.timestamp.set(from.timestamp);
  to.priceUsd.set(from.priceUsd);
  to.receivedAt.set(from.receivedAt);
  to.tradeId = from.tradeId;
}

// The column fields (TradeColumnArrays), declared once with the batch's.
export interface TradeColumns extends TradeColumnArrays {}

/** One event's trades by column. Rows [0, length) hold trades; the arrays may be longer (capacity). */
export class TradeColumns implements Iterable<Trade> {
  /**
   * `keys` is the producer's key table (KeyTable.keys), shared, never copied. The columns start with
   * room for `capacity` trades and grow as trades are appended.
   */
  constructor(
    readonly keys: readonly TradeKey[],
    capacity: number,
    public length = 0,
    columns?: TradeColumnArrays,
  ) {
    if (columns) {
      ({ key: this.key, price: this.price, volume: this.volume, timestamp: this.timestamp, priceUsd: this.priceUsd, receivedAt: this.receivedAt, tradeId: this.tradeId } = columns);
    } else {
      // One buffer for all columns, the 8-byte ones first so every view is aligned.
      const memory = new ArrayBuffer(Math.max(1, capacity) * (5 * 8 + 4));
      const n = Math.max(1, capacity);
      const f64 = (c: number) => new Float64Array(memory, c * n * 8, n);
      // In the order of the other branch: every TradeColumns has one hidden class.
      this.key = new Uint32Array(memory, 5 * n * 8, n);
      this.price = f64(0);
      this.volume = f64(1);
      this.timestamp = f64(2);
      this.priceUsd = f64(3);
      this.receivedAt = f64(4);
      this.tradeId = null;
    }
  }

  /** Appends a trade; `receivedAt` NaN when the trade carries none, `tradeId` undefined when it has none. */
  append(key: number, price: number, volume: number, timestamp: number, priceUsd: number, receivedAt: number, tradeId: string | undefined): void {
    const i = this.length;
    if (i === this.price.length) this.grow();
    this.key[i] = key;
    this.price[i] = price;
    this.volume[i] = volume;
    this.timestamp[i] = timestamp;
    this.priceUsd[i] = priceUsd;
    this.receivedAt[i] = receivedAt;
    if (tradeId !== undefined) {
      this.tradeId ??= new Array<string | null>(i).fill(null);
      this.tradeId[i] = tradeId;
    } else if (this.tradeId !== null) {
      this.tradeId[i] = null;
    }
    this.length = i + 1;
  }

  /** Appends a Trade object (a line the general parser read), its key from `table` (whose keys these are). */
  appendTrade(t: Trade, table: KeyTable): void {
    this.append(table.idOf(t.exchange, t.base, t.quote, t.direction), t.price, t.volume, t.timestamp, t.priceUsd, t.receivedAt ?? NaN, t.tradeId);
  }

  /** Trade i as an object, in the message's shape (for the few stages that want one). */
  at(i: number): Trade {
    const k = this.keys[this.key[i]];
    const trade: Trade = { exchange: k.exchange, base: k.base, quote: k.quote, direction: k.direction, price: this.price[i], volume: this.volume[i], timestamp: this.timestamp[i], priceUsd: this.priceUsd[i] };
    const tradeId = this.tradeId?.[i] ?? null;
    if (tradeId !== null) trade.tradeId = tradeId;
    if (!Number.isNaN(this.receivedAt[i])) trade.receivedAt = this.receivedAt[i];
    return trade;
  }

  /** Trades [from, to) as columns of their own: views of the same memory, no copy. */
  slice(from: number, to: number): TradeColumns {
    return new TradeColumns(this.keys, 0, to - from, {
      key: this.key.subarray(from, to),
      price: this.price.subarray(from, to),
      volume: this.volume.subarray(from, to),
      timestamp: this.timestamp.subarray(from, to),
      priceUsd: this.priceUsd.subarray(from, to),
      receivedAt: this.receivedAt.subarray(from, to),
      tradeId: this.tradeId ? this.tradeId.slice(from, to) : null,
    });
  }

  *[Symbol.iterator](): Iterator<Trade> {
    for (let i = 0; i < this.length; i++) yield this.at(i);
  }

  map<U>(f: (t: Trade, i: number) => U): U[] {
    const out = new Array<U>(this.length);
    for (let i = 0; i < this.length; i++) out[i] = f(this.at(i), i);
    return out;
  }

  /** Makes room for `capacity` trades in all, growing the columns as append() does. */
  reserve(capacity: number): void {
    while (this.price.length < capacity) this.grow();
  }

  private grow(): void {
    const next = new TradeColumns(this.keys, this.price.length * 2);
    copyColumns(this, next);
    ({ key: this.key, price: this.price, volume: this.volume, timestamp: this.timestamp, priceUsd: this.priceUsd, receivedAt: this.receivedAt } = next);
  }
}

/** The trades of a source event, as the source gave them: objects (live feeds, Kafka) or columns (a replay). */
export type TradeList = Trade[] | TradeColumns;

/** Trade i's event time, without making an object of it. */
export function timestampAt(trades: TradeList, i: number): number {
  return trades instanceof TradeColumns ? trades.timestamp[i] : trades[i].timestamp;
}

/** Trade i as an object. */
export function tradeAt(trades: TradeList, i: number): Trade {
  return trades instanceof TradeColumns ? trades.at(i) : trades[i];
}
