// Turns one raw message (a Kafka value, a replay line) into a Trade or a rejection with a reason.
// Strict on purpose: a trade that reaches the engine is one we can aggregate without second-guessing.
// Input never throws out of here, and nothing here recurses over the input's structure (a line of
// 5,000 nested brackets is just malformed input, not a stack overflow).

import { isUtf8 } from 'node:buffer';
import type { RejectReason, Trade } from './trade.js';

export type ParseResult =
  | { ok: true; trade: Trade }
  | { ok: false; reason: Extract<RejectReason, 'malformed' | 'invalid'>; detail: string };

/** 2009-01-03, the day of bitcoin's first block: no crypto trade happened before it. */
export const EARLIEST_TRADE_MS = Date.UTC(2009, 0, 3);
/** A trade's event time may be at most this far after its receive time (clocks drift; a day is not drift). */
export const MAX_CLOCK_AHEAD_MS = 86_400_000;
/**
 * volume and priceUsd must lie in [MIN_MAGNITUDE, MAX_MAGNITUDE]. Within it, volume * priceUsd and
 * any sum of such products stay finite normal doubles, so every aggregate keeps its meaning; outside
 * it, one trade can turn a window's sums into Infinity or NaN (1e308 * 1e308) or into rounding noise
 * (a subnormal price). Real markets are far inside: the cheapest tokens trade around 1e-10 USD.
 */
export const MIN_MAGNITUDE = 1e-50;
export const MAX_MAGNITUDE = 1e50;
/**
 * exchange, base, quote and tradeId are at most this long: real ids are a few dozen characters, and
 * every store can then hold every accepted trade (MySQL's keys take at most 255 characters).
 */
export const MAX_ID_CHARS = 200;

/**
 * A control character (U+0000-U+001F, U+007F) in an id: only a JSON escape can put one there, no
 * exchange names an asset so, and the stores cannot all keep it (PostgreSQL text holds no NUL), so
 * the same asset would have different keys in different stores.
 */
const CONTROL = /[\u0000-\u001f\u007f]/;

function controlChar(field: string, value: string): string {
  const c = CONTROL.exec(value)![0].charCodeAt(0);
  return `${field} contains the control character U+${c.toString(16).toUpperCase().padStart(4, '0')}, ${describe(value)}`;
}

function invalid(detail: string): ParseResult {
  return { ok: false, reason: 'invalid', detail };
}

/** What a value looks like, briefly. Never serialises a container: it could be nested without limit. */
function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'got null';
  if (typeof value === 'object') return Array.isArray(value) ? 'got an array' : 'got an object';
  const text = typeof value === 'string' ? JSON.stringify(value.length > 40 ? value.slice(0, 40) : value) : String(value);
  return `got ${typeof value === 'string' && value.length > 40 ? text.slice(0, -1) + '…"' : text}`;
}

/** Parses a JSON text into a Trade. `receivedAt` (epoch ms, our clock) bounds the event time from above. */
export function parseTrade(text: string | Buffer, receivedAt = Date.now()): ParseResult {
  const decoded = typeof text === 'string' ? text : text.toString('utf8');
  // Decoding turns bytes that are not UTF-8 into U+FFFD without a word, and the trade then went on as,
  // say, asset "bit\uFFFDcoin", with windows of its own. JSON text is UTF-8 (RFC 8259): such bytes make
  // the message malformed. Checked only when a U+FFFD is there (a real one, bytes EF BF BD, is UTF-8).
  if (typeof text !== 'string' && decoded.includes('\uFFFD') && !isUtf8(text)) {
    return { ok: false, reason: 'malformed', detail: 'not UTF-8: the message has bytes that are not UTF-8 (JSON text must be)' };
  }
  let value: unknown;
  try {
    value = JSON.parse(decoded);
  } catch (err) {
    return { ok: false, reason: 'malformed', detail: `not JSON: ${(err as Error).message}` };
  }
  return validateTrade(value, receivedAt);
}

/**
 * Validates an already-parsed value against the trade message contract. `receivedAt` is when we got
 * it (a live frame's arrival, the moment a replay read the line): an event time more than a day after
 * it is not a trade that happened.
 */
export function validateTrade(value: unknown, receivedAt = Date.now()): ParseResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, reason: 'malformed', detail: `not a JSON object: ${describe(value)}` };
  }
  const m = value as Record<string, unknown>;
  const { exchange, base, quote, direction, price, volume, timestamp, priceUsd } = m;

  if (typeof base !== 'string' || base.length === 0) return invalid(`base must be a non-empty string, ${describe(base)}`);
  if (typeof exchange !== 'string') return invalid(`exchange must be a string, ${describe(exchange)}`);
  if (typeof quote !== 'string') return invalid(`quote must be a string, ${describe(quote)}`);
  for (const [field, value] of [['base', base], ['exchange', exchange], ['quote', quote]] as const) {
    if (value.length > MAX_ID_CHARS) return invalid(`${field} is ${value.length} characters long, more than ${MAX_ID_CHARS}, ${describe(value)}`);
    if (CONTROL.test(value)) return invalid(controlChar(field, value));
  }
  if (direction !== 'buy' && direction !== 'sell') return invalid(`direction must be "buy" or "sell", ${describe(direction)}`);
  // typeof 'number' excludes numeric strings; JSON cannot carry NaN or Infinity, but a
  // value handed to validateTrade directly can, so finiteness is checked too.
  if (typeof price !== 'number' || !Number.isFinite(price)) return invalid(`price must be a finite number, ${describe(price)}`);
  // Only priceUsd is aggregated, but a price of 0 or below is no trade (it went to the archive as one).
  if (price <= 0) return invalid(`price must be > 0, ${describe(price)}`);
  if (typeof volume !== 'number' || !Number.isFinite(volume) || volume <= 0) return invalid(`volume must be a number > 0, ${describe(volume)}`);
  if (typeof priceUsd !== 'number' || !Number.isFinite(priceUsd) || priceUsd <= 0) return invalid(`priceUsd must be a number > 0, ${describe(priceUsd)}`);
  if (!inRange(volume)) return invalid(outOfRange('volume', volume));
  if (!inRange(priceUsd)) return invalid(outOfRange('priceUsd', priceUsd));
  if (typeof timestamp !== 'number' || !Number.isSafeInteger(timestamp) || timestamp < 0) {
    return invalid(`timestamp must be an integer of epoch milliseconds, ${describe(timestamp)}`);
  }
  if (timestamp < EARLIEST_TRADE_MS || timestamp > receivedAt + MAX_CLOCK_AHEAD_MS) return invalid(implausibleTime(timestamp, receivedAt));

  // The freshly parsed object becomes the trade (no copy: a copy per trade showed up as GC time).
  // Optional fields are normalised in place; unknown extra fields ride along and are ignored downstream.
  const { tradeId, receivedAt: stamped } = m;
  if (tradeId !== undefined) {
    if (tradeId === null) delete m.tradeId;
    else if (typeof tradeId === 'number') m.tradeId = String(tradeId);
    else if (typeof tradeId !== 'string') return invalid(`tradeId must be a string, ${describe(tradeId)}`);
    else if (tradeId.length > MAX_ID_CHARS) return invalid(`tradeId is ${tradeId.length} characters long, more than ${MAX_ID_CHARS}`);
    else if (CONTROL.test(tradeId)) return invalid(controlChar('tradeId', tradeId));
  }
  if (stamped !== undefined) {
    if (stamped === null) delete m.receivedAt;
    else if (typeof stamped !== 'number' || !Number.isFinite(stamped)) return invalid(`receivedAt must be epoch milliseconds, ${describe(stamped)}`);
  }
  const trade = m as unknown as Trade;
  return { ok: true, trade };
}

function inRange(v: number): boolean {
  return v >= MIN_MAGNITUDE && v <= MAX_MAGNITUDE;
}

function outOfRange(field: string, v: number): string {
  return `${field} ${v} is outside ${MIN_MAGNITUDE}..${MAX_MAGNITUDE}: window sums of it would ${v > MAX_MAGNITUDE ? 'overflow' : 'lose their precision'}`;
}

/** Says what an implausible event time most likely is, so the fix is obvious. */
function implausibleTime(ts: number, receivedAt: number): string {
  const iso = (ms: number) => (Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : `${ms} ms`);
  const plausible = (ms: number) => ms >= EARLIEST_TRADE_MS && ms <= receivedAt + MAX_CLOCK_AHEAD_MS;
  const guess =
    plausible(ts * 1000) ? ' (seconds, not milliseconds?)'
    : plausible(ts / 1000) ? ' (microseconds, not milliseconds?)'
    : plausible(ts / 1e6) ? ' (nanoseconds, not milliseconds?)'
    : '';
  // The receive time is not repeated here: it has its own column, and a detail must read the same in
  // every run over the same input (a restarted run is compared row for row with an uninterrupted one).
  const where = ts < EARLIEST_TRADE_MS ? 'before 2009-01-03, when the first bitcoin was mined' : 'more than a day after it was received';
  return `timestamp ${ts} is ${iso(ts)}, ${where}${guess}`;
}
