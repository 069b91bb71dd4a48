// Accepted trades on their way to the archive, stored by column in typed arrays.
//
// Why columns: at replay speed a million trades can arrive between two triggers. Holding a million
// Trade objects until the trigger pushes them all into V8's old generation (measured: ~0.45 s of GC per
// million); copying their numbers into typed arrays lets the objects die young.
//
// Why shared, pooled memory: a batch's columns live in one SharedArrayBuffer, so they reach the DuckDB
// worker thread without being copied, and the pipeline hands a batch's memory back once every sink has
// written it, so the next batch reuses it. Fresh buffers per batch cost a page fault per 4 KiB twice
// (here and in the worker's copy), and page faults are what this VM is slowest at.
import type { Trade } from '../core/trade.js';
import { copyColumns, KeyTable, tradeKeyText, type TradeColumns } from '../core/trade-columns.js';
import type { TradeBatch, TradeKey } from './contract.js';

export type { TradeBatch, TradeKey };
export { tradeKeyText };

export class TradeBatchBuilder {
  private batch: TradeBatch;
  /**
   * The keys of every batch this builder makes: a key keeps its id from batch to batch, so a store
   * that numbers keys in the order it first stores them (DuckDB's trade_keys) gets ids equal to its
   * own in a job it started, and need not map a batch's ids to its own trade by trade. Each batch
   * gets the list as it was when the batch was taken (a few recent keys are compared first).
   */
  private readonly keys = new KeyTable();
  /** Per producer's key table, our id for each of its key ids (see pushColumns); ids stay valid from batch to batch. */
  private readonly remaps: { keys: readonly TradeKey[]; ids: (number | undefined)[] }[] = [];
  /** Released batches of `capacity` rows, ready for reuse. */
  private readonly pool: TradeBatch[] = [];

  /** `capacity` rows per batch; more fit too (the batch grows, and that grown batch is not reused). */
  constructor(private readonly capacity = 4096) {
    this.batch = allocate(capacity, 0);
  }

  get length(): number {
    return this.batch.length;
  }

  /** Appends one trade; `receivedAt` is used when the trade carries no receive time of its own. */
  push(t: Trade, receivedAt = NaN): void {
    const b = this.batch;
    const i = b.length;
    if (i === b.price.length) this.grow();
    const c = this.batch;
    c.key[i] = this.keys.idOf(t.exchange, t.base, t.quote, t.direction);
    c.price[i] = t.price;
    c.volume[i] = t.volume;
    c.timestamp[i] = t.timestamp;
    c.priceUsd[i] = t.priceUsd;
    c.receivedAt[i] = t.receivedAt ?? receivedAt;
    if (t.tradeId !== undefined) {
      c.tradeId ??= new Array<string | null>(i).fill(null);
      c.tradeId[i] = t.tradeId;
    } else if (c.tradeId) {
      c.tradeId[i] = null;
    }
    c.length = i + 1;
  }

  /**
   * Appends trades [from, to) of `c`, a column at a time; `receivedAt` is used for those that carry no
   * receive time of their own. The batch must have room for them (it does not grow here).
   */
  pushColumns(c: TradeColumns, from: number, to: number, receivedAt = NaN): void {
    const b = this.batch;
    const at = b.length;
    const n = to - from;
    if (n <= 0) return;
    if (at + n > b.price.length) throw new Error(`TradeBatchBuilder.pushColumns: ${n} trades do not fit (${b.price.length - at} left)`);
    const remap = this.remapFor(c.keys);
    for (let i = 0; i < n; i++) {
      const k = c.key[from + i];
      let id = remap[k];
      if (id === undefined) {
        const key = c.keys[k];
        id = remap[k] = this.keys.idOf(key.exchange, key.base, key.quote, key.direction);
      }
      b.key[at + i] = id;
    }
    b.price.set(c.price.subarray(from, to), at);
    b.volume.set(c.volume.subarray(from, to), at);
    b.timestamp.set(c.timestamp.subarray(from, to), at);
    b.priceUsd.set(c.priceUsd.subarray(from, to), at);
    b.receivedAt.set(c.receivedAt.subarray(from, to), at);
    if (!Number.isNaN(receivedAt)) {
      for (let i = at; i < at + n; i++) if (Number.isNaN(b.receivedAt[i])) b.receivedAt[i] = receivedAt;
    }
    if (c.tradeId !== null || b.tradeId !== null) {
      b.tradeId ??= new Array<string | null>(at).fill(null);
      for (let i = 0; i < n; i++) b.tradeId[at + i] = c.tradeId?.[from + i] ?? null;
    }
    b.length = at + n;
  }

  /**
   * Our key id per key id of a producer's table: both tables' ids are stable (KeyTable), so the map
   * holds for the whole run. Kept for the last tables seen (a replay has one; parse threads one each).
   */
  private remapFor(keys: readonly TradeKey[]): (number | undefined)[] {
    for (const r of this.remaps) if (r.keys === keys) return r.ids;
    const ids: (number | undefined)[] = [];
    this.remaps.push({ keys, ids });
    if (this.remaps.length > 8) this.remaps.shift();
    return ids;
  }

  /**
   * Hands over the batch; the builder starts a new, empty one. The batch's columns stay valid until it
   * is released.
   */
  take(): TradeBatch {
    const out = this.batch;
    // The keys its trades use are among those seen so far; later keys must not show up in it.
    out.keys = this.keys.keys.slice();
    const reused = this.pool.pop();
    this.batch = reused ? emptied(reused) : allocate(this.capacity, 0);
    return out;
  }

  /** Gives a taken batch's memory back for reuse. The caller must not read the batch afterwards. */
  release(batch: TradeBatch): void {
    if (batch.price.length === this.capacity && this.pool.length < MAX_POOLED) this.pool.push(batch);
  }

  private grow(): void {
    const old = this.batch;
    const next = allocate(old.price.length * 2, old.length);
    copyColumns(old, next);
    this.batch = next;
  }
}

/** Batches kept for reuse: one being filled, two queued for the sinks, one being written. */
const MAX_POOLED = 4;

/** One SharedArrayBuffer per batch, 8-byte columns first so every view is aligned. */
function allocate(capacity: number, length: number): TradeBatch {
  const memory = new SharedArrayBuffer(capacity * (5 * 8 + 4));
  const f64 = (column: number) => new Float64Array(memory, column * capacity * 8, capacity);
  return batchOf(length, new Uint32Array(memory, 5 * capacity * 8, capacity), f64(0), f64(1), f64(2), f64(3), f64(4));
}

/** A reused batch's memory, holding no trades. */
function emptied(b: TradeBatch): TradeBatch {
  return batchOf(0, b.key, b.price, b.volume, b.timestamp, b.priceUsd, b.receivedAt);
}

/**
 * Every batch object is built here, so all have one hidden class: push() runs per trade, and a batch
 * made by spreading a pooled one had another, which deoptimised push() and left it polymorphic.
 */
function batchOf(length: number, key: Uint32Array, price: Float64Array, volume: Float64Array, timestamp: Float64Array, priceUsd: Float64Array, receivedAt: Float64Array): TradeBatch {
  return { length, keys: [], key, price, volume, timestamp, priceUsd, receivedAt, tradeId: null };
}

/**
 * The batch without its first n trades: views on the same memory (a store that already holds those
 * trades gets the rest). The keys table is shared; ids still index into it.
 */
export function dropFirstTrades(b: TradeBatch, n: number): TradeBatch {
  if (n === 0) return b;
  return {
    length: b.length - n, keys: b.keys, key: b.key.subarray(n), price: b.price.subarray(n), volume: b.volume.subarray(n),
    timestamp: b.timestamp.subarray(n), priceUsd: b.priceUsd.subarray(n), receivedAt: b.receivedAt.subarray(n), tradeId: b.tradeId ? b.tradeId.slice(n) : null,
  };
}
