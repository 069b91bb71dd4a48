// Replays a recorded JSONL (or JSONL.gz) file of trade messages: the bounded source.
// Streams the file (never all of it in memory), one `trades` event per chunk of lines, so the engine
// pays one async step per few thousand trades. Paced by event-time gaps at `speed` x real time, or as
// fast as it can with speed = Infinity ("--speed max").

import { existsSync, statSync } from 'node:fs';
import { systemClock, type Clock } from '../core/clock.js';
import { CoinstreamError } from '../core/errors.js';
import { parseTrade, validateTrade, type ParseResult } from '../core/parse-trade.js';
import { capRaw, type Trade } from '../core/trade.js';
import type { Source, SourceEvent } from './contract.js';
import { readFileChunks, readTextPieces, splitLines } from './line-reader.js';

export interface ReplayOptions {
  path: string;
  /** Times real time; Infinity replays as fast as possible. */
  speed: number;
  clock?: Clock;
}

/** Sleeps shorter than this are skipped: timers are not that precise and trades come in bursts. */
const MIN_SLEEP_MS = 5;

export class ReplaySource implements Source {
  readonly name: string;
  readonly bounded = true;
  private readonly clock: Clock;

  constructor(private readonly options: ReplayOptions) {
    this.name = `replay:${options.path}`;
    this.clock = options.clock ?? systemClock;
    if (!existsSync(options.path)) {
      throw new CoinstreamError('SOURCE_NOT_FOUND', `replay file not found: ${options.path} (give a JSONL or JSONL.gz file of trade messages)`);
    }
    if (!statSync(options.path).isFile()) {
      throw new CoinstreamError('SOURCE_NOT_FOUND', `replay source is not a file: ${options.path}`);
    }
    if (!(options.speed > 0)) throw new CoinstreamError('CONFIG', `--speed must be "max" or a number > 0, got ${options.speed}`);
  }

  async *events(signal: AbortSignal): AsyncGenerator<SourceEvent> {
    const paced = Number.isFinite(this.options.speed);
    let lineNo = 0;
    // Pacing anchor: the first trade's event time is played at the wall time we started.
    let firstEventTime = NaN;
    let startedAt = NaN;
    for await (const text of readTextPieces(readFileChunks(this.options.path))) {
      if (signal.aborted) return;
      let receivedAt = this.clock.now();
      const piece = parsePiece(text);
      let batch: Trade[] = [];
      for (let i = 0; i < piece.lines; i++) {
        lineNo++;
        const parsed = piece.verdict(i);
        if (parsed === null) continue; // blank line
        if (!parsed.ok) {
          yield {
            kind: 'rejected',
            rejected: { receivedAt, source: this.name, reason: parsed.reason, detail: `line ${lineNo}: ${parsed.detail}`, raw: capRaw(piece.line(i)) },
          };
          continue;
        }
        const trade = parsed.trade;
        if (paced) {
          if (Number.isNaN(firstEventTime)) {
            firstEventTime = trade.timestamp;
            startedAt = this.clock.now();
          }
          const dueAt = startedAt + (trade.timestamp - firstEventTime) / this.options.speed;
          const wait = dueAt - this.clock.now();
          if (wait >= MIN_SLEEP_MS) {
            if (batch.length > 0) yield { kind: 'trades', source: this.name, trades: batch, receivedAt };
            batch = [];
            try {
              await this.clock.sleep(wait, signal);
            } catch {
              return; // aborted while waiting: the signal is the reason, nothing to report
            }
            receivedAt = this.clock.now();
          }
        }
        // A recorded receive time is kept; the others get the event's (adding a property to every
        // parsed object would cost a hidden-class change and a property store each).
        batch.push(trade);
      }
      if (batch.length > 0) yield { kind: 'trades', source: this.name, trades: batch, receivedAt };
    }
  }
}

/**
 * The verdicts on a piece of text, one per line (null for a blank line), with each line's text on
 * demand (only rejects need it). Fast path: the lines joined into one JSON array and parsed with ONE
 * JSON.parse, which is ~10% cheaper than a call per line and creates no string per line. Any line
 * that breaks the array (a blank or malformed line, or a line holding more than one value) sends the
 * piece down the slow path: parseTrade per line, so each line gets its own verdict.
 */
function parsePiece(text: string): { lines: number; verdict: (i: number) => ParseResult | null; line: (i: number) => string } {
  let lines: string[] | null = null;
  const line = (i: number) => (lines ??= splitLines(text, []))[i];
  let count = 0;
  for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', nl + 1)) count++;
  try {
    const values: unknown = JSON.parse('[' + text.slice(0, -1).replaceAll('\n', ',') + ']');
    if (Array.isArray(values) && values.length === count) return { lines: count, verdict: (i) => validateTrade(values[i]), line };
  } catch {
    // some line is not one JSON value: sorted out line by line below
  }
  lines = splitLines(text, []);
  const verdicts = lines.map((l) => (isBlank(l) ? null : parseTrade(l)));
  return { lines: count, verdict: (i) => verdicts[i], line };
}

function isBlank(line: string): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 13) return false;
  }
  return true;
}
