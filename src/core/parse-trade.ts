// Turns one raw message (a Kafka value, a replay line) into a Trade or a rejection with a reason.
// Strict on purpose: a trade that reaches the engine is one we can aggregate without second-guessing.
// Input never throws out of here.

import type { RejectReason, Trade } from './trade.js';

export type ParseResult =
  | { ok: true; trade: Trade }
  | { ok: false; reason: Extract<RejectReason, 'malformed' | 'invalid'>; detail: string };

/** Largest epoch-ms value a JS Date can hold (year 275760). */
const MAX_EPOCH_MS = 8.64e15;

function invalid(detail: string): ParseResult {
  return { ok: false, reason: 'invalid', detail };
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const text = JSON.stringify(value);
  return `got ${text === undefined ? typeof value : text.length > 40 ? text.slice(0, 40) + '…' : text}`;
}

/** Parses a JSON text into a Trade. */
export function parseTrade(text: string | Buffer): ParseResult {
  let value: unknown;
  try {
    value = JSON.parse(typeof text === 'string' ? text : text.toString('utf8'));
  } catch (err) {
    return { ok: false, reason: 'malformed', detail: `not JSON: ${(err as Error).message}` };
  }
  return validateTrade(value);
}

/** Validates an already-parsed value against the trade message contract. */
export function validateTrade(value: unknown): ParseResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, reason: 'malformed', detail: `not a JSON object: ${describe(value)}` };
  }
  const m = value as Record<string, unknown>;
  const { exchange, base, quote, direction, price, volume, timestamp, priceUsd } = m;

  if (typeof base !== 'string' || base.length === 0) return invalid(`base must be a non-empty string, ${describe(base)}`);
  if (typeof exchange !== 'string') return invalid(`exchange must be a string, ${describe(exchange)}`);
  if (typeof quote !== 'string') return invalid(`quote must be a string, ${describe(quote)}`);
  if (direction !== 'buy' && direction !== 'sell') return invalid(`direction must be "buy" or "sell", ${describe(direction)}`);
  // typeof 'number' excludes numeric strings; JSON cannot carry NaN or Infinity, but a
  // value handed to validateTrade directly can, so finiteness is checked too.
  if (typeof price !== 'number' || !Number.isFinite(price)) return invalid(`price must be a finite number, ${describe(price)}`);
  if (typeof volume !== 'number' || !Number.isFinite(volume) || volume <= 0) return invalid(`volume must be a number > 0, ${describe(volume)}`);
  if (typeof priceUsd !== 'number' || !Number.isFinite(priceUsd) || priceUsd <= 0) return invalid(`priceUsd must be a number > 0, ${describe(priceUsd)}`);
  if (typeof timestamp !== 'number' || !Number.isSafeInteger(timestamp) || timestamp < 0 || timestamp > MAX_EPOCH_MS) {
    return invalid(`timestamp must be an integer of epoch milliseconds, ${describe(timestamp)}`);
  }

  // The freshly parsed object becomes the trade (no copy: a copy per trade showed up as GC time).
  // Optional fields are normalised in place; unknown extra fields ride along and are ignored downstream.
  const { tradeId, receivedAt } = m;
  if (tradeId !== undefined) {
    if (tradeId === null) delete m.tradeId;
    else if (typeof tradeId === 'number') m.tradeId = String(tradeId);
    else if (typeof tradeId !== 'string') return invalid(`tradeId must be a string, ${describe(tradeId)}`);
  }
  if (receivedAt !== undefined) {
    if (receivedAt === null) delete m.receivedAt;
    else if (typeof receivedAt !== 'number' || !Number.isFinite(receivedAt)) return invalid(`receivedAt must be epoch milliseconds, ${describe(receivedAt)}`);
  }
  const trade = m as unknown as Trade;
  return { ok: true, trade };
}
