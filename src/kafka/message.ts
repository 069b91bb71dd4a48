// The Kafka records coinstream writes and reads (DESIGN.md: topic `coincap_trade`, key = asset):
// - a trade: key = its `base`, value = the trade message's JSON (tradeToJson), headers below;
// - a rejection on the dead-letter topic (`coincap_trade.rejected`): value = the raw input text,
//   headers below plus the reason and what was wrong.
// Headers carry what the value does not: where it came from, when we received it, and the producing
// run's id and a sequence number, by which `process` drops a message a retried produce wrote twice.
import type { RejectReason } from '../core/trade.js';

export const DEFAULT_TOPIC = 'coincap_trade';
/** The dead-letter topic of a trade topic. */
export const deadLetterTopic = (topic: string) => `${topic}.rejected`;

export const HEADER = {
  source: 'coinstream-source',
  receivedAt: 'coinstream-received-at',
  run: 'coinstream-run',
  seq: 'coinstream-seq',
  reason: 'coinstream-reason',
  detail: 'coinstream-detail',
} as const;

export type Headers = Record<string, string>;

/** What the headers of a consumed record say (each may be missing: kcat and other producers set none). */
export interface RecordMeta {
  source?: string;
  receivedAt?: number;
  /** The producing run and its sequence number: together they identify a produce, retries included. */
  run?: string;
  seq?: number;
  reason?: RejectReason;
  detail?: string;
}

type RawHeaders = Record<string, Buffer | string | (Buffer | string)[] | undefined> | undefined;

function text(v: Buffer | string | (Buffer | string)[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  const one = Array.isArray(v) ? v[0] : v;
  return one === undefined ? undefined : one.toString();
}

const REASONS: readonly string[] = ['malformed', 'invalid', 'late', 'duplicate'];

export function readMeta(headers: RawHeaders): RecordMeta {
  const meta: RecordMeta = {};
  if (!headers) return meta;
  const source = text(headers[HEADER.source]);
  if (source) meta.source = source;
  const receivedAt = Number(text(headers[HEADER.receivedAt]));
  if (Number.isFinite(receivedAt) && receivedAt > 0) meta.receivedAt = receivedAt;
  const run = text(headers[HEADER.run]);
  const seq = Number(text(headers[HEADER.seq]));
  if (run && Number.isSafeInteger(seq)) {
    meta.run = run;
    meta.seq = seq;
  }
  const reason = text(headers[HEADER.reason]);
  if (reason && REASONS.includes(reason)) meta.reason = reason as RejectReason;
  const detail = text(headers[HEADER.detail]);
  if (detail !== undefined) meta.detail = detail;
  return meta;
}

export function writeMeta(meta: RecordMeta): Headers {
  const h: Headers = {};
  if (meta.source !== undefined) h[HEADER.source] = meta.source;
  if (meta.receivedAt !== undefined) h[HEADER.receivedAt] = String(meta.receivedAt);
  if (meta.run !== undefined && meta.seq !== undefined) {
    h[HEADER.run] = meta.run;
    h[HEADER.seq] = String(meta.seq);
  }
  if (meta.reason !== undefined) h[HEADER.reason] = meta.reason;
  if (meta.detail !== undefined) h[HEADER.detail] = meta.detail;
  return h;
}
