// A parser specialised for the trade message: reads one line's bytes straight into a Trade, without
// JSON.parse, without decoding the line to a string first, and without a string per repeated field.
//
// It is a fast path, never a second opinion. It accepts only lines it can read with certainty and that
// pass every check of validateTrade; for anything else (a rejection, an escape in a string, a number
// outside the exact fast path, an unknown or repeated key, non-ASCII text) it answers null and the caller
// takes the general path, parseTrade, which then decides. So every verdict and every value is the one
// the JSON.parse path gives; test/core/scan-trade.test.ts holds the two equal over generated, fuzzed
// and real lines.
//
// Measured on the 2-vCPU VM, warm, over 254k real lines: a per-line JSON.parse took 131-141 ms, this
// 75 ms (1.8x), with the trade object and the validation included. In a whole 1M-trade replay the
// pipeline thread's parsing went from ~0.58 s (the joined JSON.parse + validateTrade) to ~0.47 s, and
// its GC from ~0.28 s to ~0.16 s (CPU profiles, one run each): no string per field, no line strings.
// Later, warm over the 1M-line bench input (9 alternating rounds): 390 -> 327 ms, from a dense key
// table, an unboxed number slot, recent strings compared four bytes at a time, and the key order
// written down only when a line departs from the last one's.
//
// A replay on its own thread reads its pieces with the same scanner in WebAssembly (wasm-scanner.ts,
// wasm/trade-scanner.c), which must take exactly the lines this one takes, with the same values
// (test/core/scan-trade.test.ts checks both on every line). This one reads Kafka messages, one at a
// time, and the lines of the parse threads.

import { EARLIEST_TRADE_MS, MAX_CLOCK_AHEAD_MS, MAX_ID_CHARS, MAX_MAGNITUDE, MIN_MAGNITUDE } from './parse-trade.js';
import type { KeyTable, TradeColumns } from './trade-columns.js';
import type { Direction, Trade } from './trade.js';

/** Exact powers of ten: every one up to 1e22 is a double without rounding. */
const POW10 = Array.from({ length: 23 }, (_, i) => Number(`1e${i}`));
/** At most this many significant digits: their integer is below 2^53, so it is exact. */
const MAX_DIGITS = 15;
/** Distinct interned strings kept (exchanges, assets, quotes: a few hundred at most in real feeds). */
const MAX_INTERNED = 4096;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN = 0x7b;
const CLOSE = 0x7d;

// The fields of the trade message, one bit each.
const EXCHANGE = 1;
const BASE = 2;
const QUOTE_FIELD = 4;
const DIRECTION = 8;
const PRICE = 16;
const VOLUME = 32;
const TIMESTAMP = 64;
const PRICE_USD = 128;
const TRADE_ID = 256;
const RECEIVED_AT = 512;
const REQUIRED = EXCHANGE | BASE | QUOTE_FIELD | DIRECTION | PRICE | VOLUME | TIMESTAMP | PRICE_USD;

const K_EXCHANGE = Buffer.from('exchange');
const K_BASE = Buffer.from('base');
const K_QUOTE = Buffer.from('quote');
const K_DIRECTION = Buffer.from('direction');
const K_PRICE = Buffer.from('price');
const K_VOLUME = Buffer.from('volume');
const K_TIMESTAMP = Buffer.from('timestamp');
const K_PRICE_USD = Buffer.from('priceUsd');
const K_TRADE_ID = Buffer.from('tradeId');
const K_RECEIVED_AT = Buffer.from('receivedAt');

/**
 * Bytes known to be ASCII as a string. Buffer's own latin1Slice (what toString('latin1') ends in,
 * without looking up the encoding's name on every call); not in @types/node.
 */
const latin1 = (buf: Buffer, start: number, end: number): string => (buf as Buffer & { latin1Slice(s: number, e: number): string }).latin1Slice(start, end);

/** Bytes to compare four at a time: a key as it stands in compact JSON (`"exchange":`), a recent string. */
interface Words {
  bytes: Buffer;
  /** The bytes as little-endian 32-bit words, as many as fit. */
  words: Uint32Array;
}

function wordsOf(bytes: Buffer): Words {
  const words = new Uint32Array(bytes.length >> 2);
  for (let w = 0; w < words.length; w++) words[w] = bytes.readUInt32LE(w * 4);
  return { bytes, words };
}

/**
 * The quoted key of each field, by the index of its bit (31 - clz32(bit)): a dense array. Indexed by the
 * bit itself it had holes up to 512, so V8 kept it as a dictionary, and the look-up cost ~4% of a scan.
 */
const QUOTED_KEYS: Words[] = [];
for (const [bit, key] of [[EXCHANGE, K_EXCHANGE], [BASE, K_BASE], [QUOTE_FIELD, K_QUOTE], [DIRECTION, K_DIRECTION], [PRICE, K_PRICE], [VOLUME, K_VOLUME], [TIMESTAMP, K_TIMESTAMP], [PRICE_USD, K_PRICE_USD], [TRADE_ID, K_TRADE_ID], [RECEIVED_AT, K_RECEIVED_AT]] as const) {
  QUOTED_KEYS[31 - Math.clz32(bit)] = wordsOf(Buffer.from(`"${key.toString('latin1')}":`, 'latin1'));
}

/**
 * Whether buf[p, end) starts with the bytes of `key`, read through `view` (a DataView of buf): four bytes
 * per compare, which halved the cost of matching a key (~10 ns -> ~4.5 ns for `"timestamp":`).
 */
function startsWith(view: DataView<ArrayBufferLike>, buf: Buffer, p: number, end: number, key: Words): boolean {
  const { bytes, words } = key;
  if (end - p < bytes.length) return false;
  let i = 0;
  for (let w = 0; w < words.length; w++, i += 4) if (view.getUint32(p + i, true) !== words[w]) return false;
  for (; i < bytes.length; i++) if (buf[p + i] !== bytes[i]) return false;
  return true;
}

function sameOrder(order: number[], next: number[], keys: number): boolean {
  if (order.length !== keys) return false;
  for (let i = 0; i < keys; i++) if (order[i] !== next[i]) return false;
  return true;
}

/** Strings seen before, by field: the last one first (trades of one asset come in runs), then by hash. */
class Interner {
  /** The last RECENT strings found, newest at `newest`: a run of lines cycles through a few assets. */
  private readonly recent: Words[] = [];
  private readonly recentText: string[] = [];
  private newest = -1;
  /** The string the last matchRecent or get returned. */
  lastText = '';
  private readonly byHash = new Map<number, { bytes: Buffer; text: string; next: unknown }>();
  private count = 0;

  /**
   * With buf[p] an opening quote: the index of the closing quote when the string is one of the recent
   * ones (its bytes, then a quote), its text in lastText; else -1. One pass over the bytes, no hashing.
   */
  matchRecent(view: DataView<ArrayBufferLike>, buf: Buffer, p: number, end: number): number {
    if (p >= end || buf[p] !== QUOTE) return -1;
    const n = this.recent.length;
    for (let j = 0, r = this.newest; j < n; j++, r = r === 0 ? n - 1 : r - 1) {
      const recent = this.recent[r];
      const close = p + 1 + recent.bytes.length;
      if (close >= end || buf[close] !== QUOTE) continue;
      if (startsWith(view, buf, p + 1, close, recent)) {
        this.lastText = this.recentText[r];
        return close;
      }
    }
    return -1;
  }

  /** The string on ASCII bytes buf[start, end) (not one of the recent ones: matchRecent was asked first). */
  get(buf: Buffer, start: number, end: number): string {
    const length = end - start;
    let hash = length;
    for (let i = start; i < end; i++) hash = (Math.imul(hash, 31) + buf[i]) | 0;
    type Entry = { bytes: Buffer; text: string; next: Entry | null };
    const first = (this.byHash.get(hash) as Entry | undefined) ?? null;
    for (let e = first; e !== null; e = e.next) {
      const bytes = e.bytes;
      if (bytes.length !== length) continue;
      let i = 0;
      while (i < length && buf[start + i] === bytes[i]) i++;
      if (i === length) return this.remember(e.bytes, e.text);
    }
    const text = latin1(buf, start, end);
    const bytes = Buffer.from(buf.subarray(start, end));
    if (this.count < MAX_INTERNED) {
      this.byHash.set(hash, { bytes, text, next: first });
      this.count++;
    }
    return this.remember(bytes, text);
  }

  private remember(bytes: Buffer, text: string): string {
    this.newest = (this.newest + 1) % RECENT;
    this.recent[this.newest] = wordsOf(bytes);
    this.recentText[this.newest] = text;
    this.lastText = text;
    return text;
  }
}

/** Strings per field tried before hashing: a replay of several assets cycles through them. */
const RECENT = 8;

/**
 * Set by scanNumber: the number it read. A typed array's slot, not a module variable: a double stored in
 * a variable is boxed, one heap number per number read (~5% of a scan).
 */
const scanned = new Float64Array(1);

/**
 * The index after whitespace from p: space, tab, CR, but not LF, although JSON allows it. So a scan
 * never reads past a line's end, and can be given the rest of a piece instead of one line
 * (scanLineInto). A value with an LF between its tokens (a pretty-printed Kafka message) is left to
 * parseTrade, which accepts it.
 */
function skipSpace(buf: Buffer, p: number, end: number): number {
  while (p < end) {
    const c = buf[p];
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d) break;
    p++;
  }
  return p;
}

/**
 * With buf[p] the opening quote of a string: the index of its closing quote when the string is printable
 * ASCII without escapes; -1 for anything else, which JSON.parse may still read (escapes, UTF-8) or
 * reject (control characters, no closing quote).
 */
function plainStringEnd(buf: Buffer, p: number, end: number): number {
  if (p >= end || buf[p] !== QUOTE) return -1;
  for (p++; p < end; p++) {
    const c = buf[p];
    if (c === QUOTE) return p;
    if (c < 0x20 || c >= 0x80 || c === BACKSLASH) return -1;
  }
  return -1;
}

/** Whether buf[start, end) are the bytes of `key`. */
function isKey(buf: Buffer, start: number, end: number, key: Buffer): boolean {
  if (end - start !== key.length) return false;
  for (let i = 0; i < key.length; i++) if (buf[start + i] !== key[i]) return false;
  return true;
}

/** The field bit of the key on buf[start, end) (a plain string's bytes), or 0 for a key not in the message. */
function keyBit(buf: Buffer, start: number, end: number): number {
  // Length and first byte pick the one candidate; its bytes decide.
  switch (end - start) {
    case 4:
      return isKey(buf, start, end, K_BASE) ? BASE : 0;
    case 5:
      return buf[start] === 0x70 ? (isKey(buf, start, end, K_PRICE) ? PRICE : 0) : isKey(buf, start, end, K_QUOTE) ? QUOTE_FIELD : 0;
    case 6:
      return isKey(buf, start, end, K_VOLUME) ? VOLUME : 0;
    case 7:
      return isKey(buf, start, end, K_TRADE_ID) ? TRADE_ID : 0;
    case 8:
      return buf[start] === 0x65 ? (isKey(buf, start, end, K_EXCHANGE) ? EXCHANGE : 0) : isKey(buf, start, end, K_PRICE_USD) ? PRICE_USD : 0;
    case 9:
      return buf[start] === 0x64 ? (isKey(buf, start, end, K_DIRECTION) ? DIRECTION : 0) : isKey(buf, start, end, K_TIMESTAMP) ? TIMESTAMP : 0;
    case 10:
      return isKey(buf, start, end, K_RECEIVED_AT) ? RECEIVED_AT : 0;
    default:
      return 0;
  }
}

/**
 * A JSON number from p, when it is exact by the fast path: at most 15 significant digits (an exact
 * integer m) and a decimal exponent e within ±22 (10^|e| exact), so that m * 10^e or m / 10^-e is ONE
 * correctly rounded operation, the double JSON.parse gives too. Returns the index after it and sets
 * scanned[0]; -1 otherwise (not a number, or not one this path reads exactly).
 */
function scanNumber(buf: Buffer, p: number, end: number): number {
  let negative = false;
  if (p < end && buf[p] === 0x2d /* - */) {
    negative = true;
    p++;
  }
  if (p >= end) return -1;
  let c = buf[p];
  let mantissa = 0;
  let digits = 0;
  let exponent = 0;
  if (c === 0x30 /* 0 */) {
    p++;
  } else if (c >= 0x31 && c <= 0x39) {
    while (p < end && (c = buf[p]) >= 0x30 && c <= 0x39) {
      if (++digits > MAX_DIGITS) return -1;
      mantissa = mantissa * 10 + (c - 0x30);
      p++;
    }
  } else {
    return -1;
  }
  if (p < end && buf[p] === 0x2e /* . */) {
    p++;
    const fractionStart = p;
    while (p < end && (c = buf[p]) >= 0x30 && c <= 0x39) {
      // Leading zeros of a fraction (0.000123) are not significant digits.
      if ((mantissa !== 0 || c !== 0x30) && ++digits > MAX_DIGITS) return -1;
      mantissa = mantissa * 10 + (c - 0x30);
      exponent--;
      p++;
    }
    if (p === fractionStart) return -1; // "1." is not JSON
  }
  if (p < end && (buf[p] | 0x20) === 0x65 /* e or E */) {
    p++;
    let expNegative = false;
    if (p < end && (buf[p] === 0x2b || buf[p] === 0x2d)) {
      expNegative = buf[p] === 0x2d;
      p++;
    }
    const expStart = p;
    let e = 0;
    while (p < end && (c = buf[p]) >= 0x30 && c <= 0x39) {
      if (p - expStart >= 4) return -1;
      e = e * 10 + (c - 0x30);
      p++;
    }
    if (p === expStart) return -1; // "1e" is not JSON
    exponent += expNegative ? -e : e;
  }
  let value: number;
  if (mantissa === 0) value = 0;
  else if (exponent >= 0 && exponent <= 22) value = mantissa * POW10[exponent];
  else if (exponent < 0 && exponent >= -22) value = mantissa / POW10[-exponent];
  else return -1;
  scanned[0] = negative ? -value : value;
  return p;
}

/**
 * Scans trade lines. One scanner per thread of reading: it keeps the strings it has seen, so that the
 * ten-thousandth "bitcoin" costs a compare instead of a new string.
 */
export class TradeScanner {
  private readonly exchanges = new Interner();
  private readonly bases = new Interner();
  private readonly quotes = new Interner();
  /** A DataView of the last buffer scanned (a piece holds hundreds of lines: one view for all). */
  private view: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0));
  private viewOf: Buffer | null = null;
  /** The keys of the last trade read, in its order, by bit. */
  private order: number[] = [];
  /** This line's keys so far. */
  private readonly next: number[] = new Array<number>(10).fill(0);

  /** What the last read() found: the strings, and the numbers in NUMBER_SLOTS order. */
  private found = { exchange: '', base: '', quote: '', direction: 'buy' as Direction, tradeId: '', seen: 0 };
  private readonly foundNumbers = new Float64Array(5);

  /**
   * The trade on bytes buf[start, end) (one line, without its newline), when the line is a trade
   * message this scanner can read exactly and validateTrade would accept it with `receivedAt`; else
   * null, and the caller must take parseTrade's path for its verdict.
   */
  scan(buf: Buffer, start: number, end: number, receivedAt: number): Trade | null {
    if (!this.read(buf, start, end, receivedAt)) return null;
    const { exchange, base, quote, direction, tradeId, seen } = this.found;
    const n = this.foundNumbers;
    const trade: Trade = { exchange, base, quote, direction, price: n[0], volume: n[1], timestamp: n[2], priceUsd: n[3] };
    if ((seen & TRADE_ID) !== 0) trade.tradeId = tradeId;
    if ((seen & RECEIVED_AT) !== 0) trade.receivedAt = n[4];
    return trade;
  }

  /**
   * scan() for the line that starts at `start` and ends at the next LF before `limit` (or at `limit`),
   * appending the trade to `out` instead of making an object of it (its key from `keys`, the table
   * out's keys are): the index of that LF (or `limit`) when the line is a trade the scanner reads, else
   * -1, nothing appended, and the caller finds the line's end itself. Saves looking for the LF first: a Buffer.indexOf call
   * per line cost ~50 ns of the ~140 spent per line around the scanner.
   */
  scanLineInto(buf: Buffer, start: number, limit: number, receivedAt: number, out: TradeColumns, keys: KeyTable): number {
    if (!this.read(buf, start, limit, receivedAt, true)) return -1;
    const f = this.found;
    const n = this.foundNumbers;
    out.append(keys.idOf(f.exchange, f.base, f.quote, f.direction), n[0], n[1], n[2], n[3], (f.seen & RECEIVED_AT) !== 0 ? n[4] : NaN, (f.seen & TRADE_ID) !== 0 ? f.tradeId : undefined);
    return this.lineEnd;
  }

  /** Where the last line read by read(..., toLineEnd) ended: its LF, or the limit. */
  private lineEnd = 0;

  /**
   * Reads one line into `found`; false where scan() answers null. With `toLineEnd`, the line ends at
   * the first LF (which no token can contain, and skipSpace does not pass) or at `end`.
   */
  private read(buf: Buffer, start: number, end: number, receivedAt: number, toLineEnd = false): boolean {
    let exchange = '';
    let base = '';
    let quote = '';
    let direction: Direction = 'buy';
    let price = 0;
    let volume = 0;
    let timestamp = 0;
    let priceUsd = 0;
    let tradeId = '';
    let stamped = 0;
    let seen = 0;

    let p = skipSpace(buf, start, end);
    if (p >= end || buf[p] !== OPEN) return false;
    p = skipSpace(buf, p + 1, end);
    const order = this.order;
    let keys = 0;
    // Every key so far came in the order of the last line's: `next` is written only once one did not.
    let guessed = true;
    if (buf !== this.viewOf) {
      this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      this.viewOf = buf;
    }
    const view = this.view;
    for (let k = 0; ; k++) {
      // Lines of one feed list their keys in one order: the key the last line had here is tried first,
      // as `"key":` in one pass; anything else takes the general way.
      let bit = k < order.length ? order[k] : 0;
      const quotedKey = bit !== 0 ? QUOTED_KEYS[31 - Math.clz32(bit)] : null;
      if (quotedKey !== null && startsWith(view, buf, p, end, quotedKey)) {
        p += quotedKey.bytes.length;
        if (!guessed) this.next[k] = bit;
      } else {
        if (guessed) {
          for (let j = 0; j < k; j++) this.next[j] = order[j];
          guessed = false;
        }
        const keyEnd = plainStringEnd(buf, p, end);
        if (keyEnd === -1) return false;
        bit = keyBit(buf, p + 1, keyEnd);
        if (bit === 0) return false; // not a key of the message
        p = skipSpace(buf, keyEnd + 1, end);
        if (p >= end || buf[p] !== COLON) return false;
        p++;
        this.next[k] = bit; // k < 10: an eleventh key would repeat one
      }
      if ((seen & bit) !== 0) return false; // a repeated key (JSON.parse keeps the last)
      seen |= bit;
      p = skipSpace(buf, p, end);
      if (bit <= DIRECTION || bit === TRADE_ID) {
        const interner = bit === EXCHANGE ? this.exchanges : bit === BASE ? this.bases : bit === QUOTE_FIELD ? this.quotes : null;
        // The same value as the last line's, in one pass; else find the string's end first.
        let close = interner !== null ? interner.matchRecent(view, buf, p, end) : -1;
        if (close !== -1) {
          const text = interner!.lastText;
          if (bit === EXCHANGE) exchange = text;
          else if (bit === BASE) base = text;
          else quote = text;
        } else {
          close = plainStringEnd(buf, p, end);
          if (close === -1) return false;
          if (bit === EXCHANGE) exchange = this.exchanges.get(buf, p + 1, close);
          else if (bit === BASE) base = this.bases.get(buf, p + 1, close);
          else if (bit === QUOTE_FIELD) quote = this.quotes.get(buf, p + 1, close);
          else if (bit === TRADE_ID) tradeId = latin1(buf, p + 1, close);
          else if (close - p === 4 && buf[p + 1] === 0x62 && buf[p + 2] === 0x75 && buf[p + 3] === 0x79) direction = 'buy';
          else if (close - p === 5 && buf[p + 1] === 0x73 && buf[p + 2] === 0x65 && buf[p + 3] === 0x6c && buf[p + 4] === 0x6c) direction = 'sell';
          else return false;
        }
        p = close + 1;
      } else {
        p = scanNumber(buf, p, end);
        if (p === -1) return false;
        if (bit === PRICE) price = scanned[0];
        else if (bit === VOLUME) volume = scanned[0];
        else if (bit === TIMESTAMP) timestamp = scanned[0];
        else if (bit === PRICE_USD) priceUsd = scanned[0];
        else stamped = scanned[0];
      }
      p = skipSpace(buf, p, end);
      if (p >= end) return false;
      const c = buf[p];
      p = skipSpace(buf, p + 1, end);
      if (c === CLOSE) {
        keys = k + 1;
        break;
      }
      if (c !== COMMA) return false;
    }
    if (p !== end) {
      // More after the object: not one JSON value, unless the line ends here.
      if (!toLineEnd || buf[p] !== 0x0a) return false;
    }
    this.lineEnd = p;

    // validateTrade's checks, in the form an accepted trade passes them; any failure goes to it for the detail.
    if ((seen & REQUIRED) !== REQUIRED) return false;
    if (base.length === 0 || base.length > MAX_ID_CHARS || exchange.length > MAX_ID_CHARS || quote.length > MAX_ID_CHARS) return false;
    if (!(volume >= MIN_MAGNITUDE && volume <= MAX_MAGNITUDE)) return false;
    if (!(priceUsd >= MIN_MAGNITUDE && priceUsd <= MAX_MAGNITUDE)) return false;
    if (!(price > 0)) return false;
    if (!Number.isSafeInteger(timestamp) || timestamp < EARLIEST_TRADE_MS || timestamp > receivedAt + MAX_CLOCK_AHEAD_MS) return false;
    if ((seen & TRADE_ID) !== 0 && tradeId.length > MAX_ID_CHARS) return false;

    // This line's key order is the guess for the next line's.
    if (!guessed) {
      if (!sameOrder(order, this.next, keys)) this.order = this.next.slice(0, keys);
    } else if (keys !== order.length) {
      this.order = order.slice(0, keys);
    }

    const f = this.found;
    f.exchange = exchange;
    f.base = base;
    f.quote = quote;
    f.direction = direction;
    f.tradeId = tradeId;
    f.seen = seen;
    const n = this.foundNumbers;
    n[0] = price;
    n[1] = volume;
    n[2] = timestamp;
    n[3] = priceUsd;
    n[4] = stamped;
    return true;
  }
}
