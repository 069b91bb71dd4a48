// Accepted trades on their way to the archive, stored by column in typed arrays.
//
// Why columns: at replay speed a million trades can arrive between two triggers. Holding a million
// Trade objects until the trigger pushes them all into V8's old generation (measured: ~0.45 s of GC per
// million); copying their numbers into typed arrays lets the objects die young, and typed arrays cross
// to the DuckDB worker thread as one memory copy each.
import type { Trade } from '../core/trade.js';

/** The plain-data form that crosses to a worker: typed arrays sized >= length, names by id. */
export interface TradeBatch {
  length: number;
  /** exchange/base/quote are ids into this list. */
  names: string[];
  exchange: Uint32Array;
  base: Uint32Array;
  quote: Uint32Array;
  /** 1 = buy, 0 = sell. */
  isBuy: Uint8Array;
  price: Float64Array;
  volume: Float64Array;
  timestamp: Float64Array;
  priceUsd: Float64Array;
  /** NaN where the trade had no receive time. */
  receivedAt: Float64Array;
  /** Only present when some trade had an id. */
  tradeId: (string | null)[] | null;
}

export class TradeBatchBuilder {
  private batch: TradeBatch;
  private readonly ids = new Map<string, number>();
  /** The last name looked up per column: consecutive trades mostly repeat them, and a string compare beats hashing a fresh string. */
  private readonly last = { exchange: { name: '', id: -1 }, base: { name: '', id: -1 }, quote: { name: '', id: -1 } };

  constructor(capacity = 4096) {
    this.batch = allocate(capacity, 0, []);
  }

  get length(): number {
    return this.batch.length;
  }

  push(t: Trade): void {
    const b = this.batch;
    const i = b.length;
    if (i === b.price.length) this.grow();
    const c = this.batch;
    c.exchange[i] = this.cachedId(this.last.exchange, t.exchange);
    c.base[i] = this.cachedId(this.last.base, t.base);
    c.quote[i] = this.cachedId(this.last.quote, t.quote);
    c.isBuy[i] = t.direction === 'buy' ? 1 : 0;
    c.price[i] = t.price;
    c.volume[i] = t.volume;
    c.timestamp[i] = t.timestamp;
    c.priceUsd[i] = t.priceUsd;
    c.receivedAt[i] = t.receivedAt ?? NaN;
    if (t.tradeId !== undefined) {
      c.tradeId ??= new Array<string | null>(i).fill(null);
      c.tradeId[i] = t.tradeId;
    } else if (c.tradeId) {
      c.tradeId[i] = null;
    }
    c.length = i + 1;
  }

  /** Hands over the batch; the builder starts a new, empty one. */
  take(): TradeBatch {
    const out = this.batch;
    this.batch = allocate(Math.max(4096, Math.min(out.length, 1 << 20)), 0, []);
    this.ids.clear();
    for (const cache of Object.values(this.last)) cache.id = -1;
    return out;
  }

  private cachedId(cache: { name: string; id: number }, name: string): number {
    if (cache.id !== -1 && cache.name === name) return cache.id;
    cache.name = name;
    cache.id = this.idOf(name);
    return cache.id;
  }

  private idOf(name: string): number {
    let id = this.ids.get(name);
    if (id === undefined) {
      id = this.batch.names.length;
      this.batch.names.push(name);
      this.ids.set(name, id);
    }
    return id;
  }

  private grow(): void {
    const old = this.batch;
    const next = allocate(old.price.length * 2, old.length, old.names);
    next.exchange.set(old.exchange);
    next.base.set(old.base);
    next.quote.set(old.quote);
    next.isBuy.set(old.isBuy);
    next.price.set(old.price);
    next.volume.set(old.volume);
    next.timestamp.set(old.timestamp);
    next.priceUsd.set(old.priceUsd);
    next.receivedAt.set(old.receivedAt);
    next.tradeId = old.tradeId;
    this.batch = next;
  }
}

function allocate(capacity: number, length: number, names: string[]): TradeBatch {
  return {
    length,
    names,
    exchange: new Uint32Array(capacity),
    base: new Uint32Array(capacity),
    quote: new Uint32Array(capacity),
    isBuy: new Uint8Array(capacity),
    price: new Float64Array(capacity),
    volume: new Float64Array(capacity),
    timestamp: new Float64Array(capacity),
    priceUsd: new Float64Array(capacity),
    receivedAt: new Float64Array(capacity),
    tradeId: null,
  };
}

/** Reads trade i back as a Trade (for sinks that want objects). */
export function tradeAt(b: TradeBatch, i: number): Trade {
  const t: Trade = {
    exchange: b.names[b.exchange[i]],
    base: b.names[b.base[i]],
    quote: b.names[b.quote[i]],
    direction: b.isBuy[i] === 1 ? 'buy' : 'sell',
    price: b.price[i],
    volume: b.volume[i],
    timestamp: b.timestamp[i],
    priceUsd: b.priceUsd[i],
  };
  const id = b.tradeId?.[i];
  if (id !== undefined && id !== null) t.tradeId = id;
  if (!Number.isNaN(b.receivedAt[i])) t.receivedAt = b.receivedAt[i];
  return t;
}
