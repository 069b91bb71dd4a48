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
// Measured on the replay hot path (2-vCPU VM): JSON.parse + validateTrade cost ~0.9 s per million
// trades; this costs ~0.25 s, most of the difference being the strings and objects JSON.parse makes.

import { EARLIEST_TRADE_MS, MAX_CLOCK_AHEAD_MS, MAX_ID_CHARS, MAX_MAGNITUDE, MIN_MAGNITUDE } from './parse-trade.js';
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

const KEYS: [string, number][] = [
  ['exchange', EXCHANGE],
  ['base', BASE],
  ['quote', QUOTE_FIELD],
  ['direction', DIRECTION],
  ['price', PRICE],
  ['volume', VOLUME],
  ['timestamp', TIMESTAMP],
  ['priceUsd', PRICE_USD],
  ['tradeId', TRADE_ID],
  ['receivedAt', RECEIVED_AT],
];
const KEY_BYTES = KEYS.map(([k, bit]) => ({ bytes: Buffer.from(k, 'latin1'), bit }));

/**
 * Bytes known to be ASCII as a string. Buffer's own latin1Slice (what toString('latin1') ends in,
 * without looking up the encoding's name on every call); not in @types/node.
 */
const latin1 = (buf: Buffer, start: number, end: number): string => (buf as Buffer & { latin1Slice(s: number, e: number): string }).latin1Slice(start, end);

interface Interned {
  bytes: Buffer;
  text: string;
  /** Another string with the same hash. */
  next: Interned | null;
}

/**
 * Scans trade lines. One scanner per thread of reading: it keeps the strings it has seen, so that the
 * ten-thousandth "bitcoin" costs a hash and a compare instead of a new string.
 */
export class TradeScanner {
  /** Where the scan is, in the current line. */
  private p = 0;
  private end = 0;
  private buf: Buffer = Buffer.alloc(0);
  /** The last number or string scanned. */
  private number = 0;
  private text = '';
  private readonly interned = new Map<number, Interned>();
  private internedCount = 0;

  /**
   * The trade on bytes buf[start, end) (one line, without its newline), when the line is a trade
   * message this scanner can read exactly and validateTrade would accept it with `receivedAt`; else
   * null, and the caller must take parseTrade's path for its verdict.
   */
  scan(buf: Buffer, start: number, end: number, receivedAt: number): Trade | null {
    this.buf = buf;
    this.p = start;
    this.end = end;
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

    this.skipSpace();
    if (this.p >= end || buf[this.p] !== OPEN) return null;
    this.p++;
    for (;;) {
      this.skipSpace();
      const bit = this.key();
      if (bit === 0 || (seen & bit) !== 0) return null; // unknown or repeated key (JSON.parse keeps the last)
      seen |= bit;
      this.skipSpace();
      if (this.p >= end || buf[this.p] !== COLON) return null;
      this.p++;
      this.skipSpace();
      switch (bit) {
        case EXCHANGE:
        case BASE:
        case QUOTE_FIELD:
          if (!this.string(true)) return null;
          if (bit === EXCHANGE) exchange = this.text;
          else if (bit === BASE) base = this.text;
          else quote = this.text;
          break;
        case TRADE_ID:
          if (!this.string(false)) return null;
          tradeId = this.text;
          break;
        case DIRECTION: {
          if (!this.string(true)) return null;
          const d = this.text;
          if (d !== 'buy' && d !== 'sell') return null;
          direction = d;
          break;
        }
        default:
          if (!this.numberValue()) return null;
          if (bit === PRICE) price = this.number;
          else if (bit === VOLUME) volume = this.number;
          else if (bit === TIMESTAMP) timestamp = this.number;
          else if (bit === PRICE_USD) priceUsd = this.number;
          else stamped = this.number;
      }
      this.skipSpace();
      if (this.p >= end) return null;
      const c = buf[this.p++];
      if (c === CLOSE) break;
      if (c !== COMMA) return null;
    }
    this.skipSpace();
    if (this.p !== end) return null; // more after the object: not one JSON value

    // validateTrade's checks, in the form an accepted trade passes them; any failure goes to it for the detail.
    if ((seen & REQUIRED) !== REQUIRED) return null;
    if (base.length === 0 || base.length > MAX_ID_CHARS || exchange.length > MAX_ID_CHARS || quote.length > MAX_ID_CHARS) return null;
    if (!(volume > 0) || !(volume >= MIN_MAGNITUDE && volume <= MAX_MAGNITUDE)) return null;
    if (!(priceUsd > 0) || !(priceUsd >= MIN_MAGNITUDE && priceUsd <= MAX_MAGNITUDE)) return null;
    if (!Number.isSafeInteger(timestamp) || timestamp < EARLIEST_TRADE_MS || timestamp > receivedAt + MAX_CLOCK_AHEAD_MS) return null;
    if ((seen & TRADE_ID) !== 0 && tradeId.length > MAX_ID_CHARS) return null;

    const trade: Trade = { exchange, base, quote, direction, price, volume, timestamp, priceUsd };
    if ((seen & TRADE_ID) !== 0) trade.tradeId = tradeId;
    if ((seen & RECEIVED_AT) !== 0) trade.receivedAt = stamped;
    return trade;
  }

  /** JSON's insignificant whitespace: space, tab, CR, LF. */
  private skipSpace(): void {
    const buf = this.buf;
    let p = this.p;
    while (p < this.end) {
      const c = buf[p];
      if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) break;
      p++;
    }
    this.p = p;
  }

  /** A key string of the trade message: its bit, or 0 (not a key we know, or not a plain string). */
  private key(): number {
    const buf = this.buf;
    const start = this.p + 1;
    if (this.p >= this.end || buf[this.p] !== QUOTE) return 0;
    let close = start;
    while (close < this.end && buf[close] !== QUOTE) close++;
    if (close >= this.end) return 0;
    const length = close - start;
    for (const k of KEY_BYTES) {
      if (k.bytes.length !== length) continue;
      let i = 0;
      while (i < length && buf[start + i] === k.bytes[i]) i++;
      if (i === length) {
        this.p = close + 1;
        return k.bit;
      }
    }
    return 0; // also a key with an escape in it: a backslash is never one of our keys' bytes
  }

  /**
   * A string of printable ASCII without escapes into this.text (interned when `intern`); false for
   * anything else, which JSON.parse may still read (escapes, UTF-8) or reject (control characters).
   */
  private string(intern: boolean): boolean {
    const buf = this.buf;
    if (this.p >= this.end || buf[this.p] !== QUOTE) return false;
    const start = this.p + 1;
    let hash = 0;
    let p = start;
    for (;;) {
      if (p >= this.end) return false;
      const c = buf[p];
      if (c === QUOTE) break;
      if (c < 0x20 || c >= 0x80 || c === BACKSLASH) return false;
      hash = (Math.imul(hash, 31) + c) | 0;
      p++;
    }
    this.p = p + 1;
    this.text = intern ? this.intern(start, p, hash) : latin1(buf, start, p);
    return true;
  }

  private intern(start: number, end: number, hash: number): string {
    const buf = this.buf;
    const length = end - start;
    const first = this.interned.get(hash);
    for (let e = first ?? null; e !== null; e = e.next) {
      const bytes = e.bytes;
      if (bytes.length !== length) continue;
      let i = 0;
      while (i < length && buf[start + i] === bytes[i]) i++;
      if (i === length) return e.text;
    }
    const text = latin1(buf, start, end);
    if (this.internedCount < MAX_INTERNED) {
      this.interned.set(hash, { bytes: Buffer.from(buf.subarray(start, end)), text, next: first ?? null });
      this.internedCount++;
    }
    return text;
  }

  /**
   * A JSON number into this.number, when it is exact by the fast path: at most 15 significant digits
   * (an exact integer m) and a decimal exponent e within ±22 (10^|e| exact), so that m * 10^e or
   * m / 10^-e is ONE correctly rounded operation, the double JSON.parse gives too. False otherwise.
   */
  private numberValue(): boolean {
    const buf = this.buf;
    const end = this.end;
    let p = this.p;
    let negative = false;
    if (p < end && buf[p] === 0x2d /* - */) {
      negative = true;
      p++;
    }
    if (p >= end) return false;
    let c = buf[p];
    let mantissa = 0;
    let digits = 0;
    let exponent = 0;
    if (c === 0x30 /* 0 */) {
      p++;
    } else if (c >= 0x31 && c <= 0x39) {
      while (p < end && (c = buf[p]) >= 0x30 && c <= 0x39) {
        if (++digits > MAX_DIGITS) return false;
        mantissa = mantissa * 10 + (c - 0x30);
        p++;
      }
    } else {
      return false;
    }
    if (p < end && buf[p] === 0x2e /* . */) {
      p++;
      const fractionStart = p;
      while (p < end && (c = buf[p]) >= 0x30 && c <= 0x39) {
        // Leading zeros of a fraction (0.000123) are not significant digits.
        if (mantissa !== 0 || c !== 0x30) {
          if (++digits > MAX_DIGITS) return false;
        }
        mantissa = mantissa * 10 + (c - 0x30);
        exponent--;
        p++;
      }
      if (p === fractionStart) return false; // "1." is not JSON
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
        if (p - expStart >= 4) return false;
        e = e * 10 + (c - 0x30);
        p++;
      }
      if (p === expStart) return false; // "1e" is not JSON
      exponent += expNegative ? -e : e;
    }
    let value: number;
    if (mantissa === 0) value = 0;
    else if (exponent >= 0 && exponent <= 22) value = mantissa * POW10[exponent];
    else if (exponent < 0 && exponent >= -22) value = mantissa / POW10[-exponent];
    else return false;
    this.number = negative ? -value : value;
    this.p = p;
    return true;
  }
}
