// One Kafka partition as a Source (src/sources/contract.ts) for `coinstream process`: the records the
// consumer fetched for it, turned into trades and rejections, each with its position (offset + 1), so
// the pipeline's recovery works as for a file (DESIGN.md, Recovery: a partition is an ordered log).
//
// The shared consumer pushes fetched records in (push); the pipeline reads events out. Records before
// the position being read from are dropped (a fetch from before a seek). A record whose (run, seq)
// headers were already seen among the previous DEDUP_WINDOW records of the partition was written twice
// by a retried produce: it is rejected as `duplicate`. That window is a function of the log alone, so a
// restart rebuilds it by reading the DEDUP_WINDOW records before its position again (warm-up) and
// decides exactly as the uninterrupted run did.
import type { Clock } from '../core/clock.js';
import { parseTrade } from '../core/parse-trade.js';
import { TradeScanner } from '../core/scan-trade.js';
import { capRaw, type RejectedTrade, type Trade } from '../core/trade.js';
import type { Source, SourceEvent, SourcePosition } from '../sources/contract.js';
import { readMeta } from './message.js';

/** How many records back a re-sent record is recognised. */
export const DEDUP_WINDOW = 10_000;

/** A fetched record, as kafkajs gives it. */
export interface FetchedRecord {
  offset: string;
  timestamp: string;
  value: Buffer | null;
  headers?: Record<string, Buffer | string | (Buffer | string)[] | undefined>;
}

export interface PartitionSourceOptions {
  topic: string;
  partition: number;
  /** The dead-letter topic: every record is a rejection (reason and detail from its headers). */
  deadLetter: boolean;
  clock: Clock;
  /**
   * Where the partition starts when the store holds no progress (--starting-offsets): its low
   * watermark (earliest) or its end (latest).
   */
  startOffset: number;
  /** The lowest offset the partition still has (records before it were deleted by retention). */
  lowOffset: number;
  /** --available-now: the partition ends at this offset (its end when the run started). */
  endOffset?: number;
  /** --max-offsets-per-trigger: at most this many records per trigger interval. */
  maxPerTrigger?: number;
  triggerMs: number;
  /** Moves the consumer of this partition to `offset` (kafkajs consumer.seek). */
  seek(offset: number): void;
  /** Asks the consumer to stop or go on fetching this partition (backpressure). */
  pause(paused: boolean): void;
}

/** Records waiting beyond which fetching pauses; it resumes once the pipeline has taken them (take()). */
const HIGH_WATER = 20_000;

export class KafkaPartitionSource implements Source {
  readonly name: string;
  readonly bounded: boolean;
  readonly replayable = true;
  private queue: FetchedRecord[] = [];
  private head = 0;
  private wake: (() => void) | null = null;
  private paused = false;
  /** The next offset this source wants: records before it are dropped (or, before `from`, warm-up). */
  private next = -1;
  /** Records before this offset only feed the duplicate window. */
  private from = 0;
  /**
   * False until the record at the offset sought arrives: records fetched before the seek landed (from
   * the group's committed offset, which may be anywhere) are not this source's business.
   */
  private synced = false;
  private readonly scanner = new TradeScanner();
  private readonly recent = new Map<string, number>();
  private readonly recentOrder: { key: string; offset: number }[] = [];
  private recentHead = 0;
  /** Offset of the newest record fetched, for lag (-1: none yet). */
  highWatermark = -1;

  constructor(private readonly o: PartitionSourceOptions) {
    this.name = `kafka:${o.topic}/${o.partition}`;
    this.bounded = o.endOffset !== undefined;
  }

  /** The next offset to process: where the pipeline is (lag = high watermark - this). */
  get position(): number {
    return this.from > this.next ? this.from : this.next;
  }

  /** No position: the job read no record of this partition (it had none), and still has none to read. */
  moreAfter(position: SourcePosition | undefined): boolean {
    return this.o.endOffset !== undefined && this.o.endOffset > (position?.offset ?? this.o.startOffset);
  }

  /** Called by the consumer with the records it fetched for this partition, in offset order. */
  push(records: FetchedRecord[], highWatermark: number): void {
    this.highWatermark = Math.max(this.highWatermark, highWatermark);
    for (const r of records) this.queue.push(r);
    if (!this.paused && this.queue.length - this.head > HIGH_WATER) {
      this.paused = true;
      this.o.pause(true);
    }
    this.wake?.();
  }

  async *events(signal: AbortSignal, from?: SourcePosition): AsyncGenerator<SourceEvent> {
    const { o } = this;
    this.from = from?.offset ?? o.startOffset;
    // Re-read the records before `from` that decide what is a duplicate after it.
    this.next = Math.max(o.lowOffset, this.from - DEDUP_WINDOW);
    this.synced = false;
    o.seek(this.next);
    const onAbort = () => this.wake?.();
    signal.addEventListener('abort', onAbort, { once: true });
    let windowStart = o.clock.now();
    let inWindow = 0;
    try {
      while (!signal.aborted) {
        if (o.endOffset !== undefined && this.position >= o.endOffset) return;
        const records = await this.take(signal);
        if (records.length === 0) continue;
        for (let i = 0; i < records.length; ) {
          // The warm-up (records before `from`, re-read only to know duplicates) is not processed and
          // counts against no limit: throttled, a restart stalled 10,000/N triggers before its first record.
          let warm = 0;
          while (i + warm < records.length && Number(records[i + warm].offset) < this.from) warm++;
          if (warm > 0) {
            yield* this.convert(records.slice(i, i + warm));
            i += warm;
            continue;
          }
          // --max-offsets-per-trigger: wait for the next interval once this one's share is used.
          let n = records.length - i;
          if (o.maxPerTrigger !== undefined) {
            if (o.clock.now() - windowStart >= o.triggerMs) (windowStart = o.clock.now()), (inWindow = 0);
            if (inWindow >= o.maxPerTrigger) {
              await o.clock.sleep(Math.max(1, windowStart + o.triggerMs - o.clock.now()), signal).catch(() => undefined);
              if (signal.aborted) return;
              continue;
            }
            n = Math.min(n, o.maxPerTrigger - inWindow);
            inWindow += n;
          }
          yield* this.convert(records.slice(i, i + n));
          i += n;
          if (o.endOffset !== undefined && this.position >= o.endOffset) return;
        }
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** The records waiting (at least one, unless aborted), in order, without those before `next`. */
  private async take(signal: AbortSignal): Promise<FetchedRecord[]> {
    while (this.head >= this.queue.length && !signal.aborted) {
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
    const out = this.queue.slice(this.head).filter((r) => Number(r.offset) >= this.next);
    this.queue = [];
    this.head = 0;
    if (this.paused) {
      this.paused = false;
      this.o.pause(false);
    }
    return out;
  }

  /** Records (in offset order, from `next` on) to source events. */
  private *convert(records: FetchedRecord[]): Generator<SourceEvent> {
    const { o } = this;
    let trades: Trade[] = [];
    /** Each trade's record value, decoded only when a later stage asks for its text (a late trade). */
    let values: (Buffer | null)[] = [];
    let offsets: number[] = [];
    const flush = (): SourceEvent | null => {
      if (trades.length === 0) return null;
      const t = trades;
      const raw = values;
      const at = offsets;
      trades = [];
      values = [];
      offsets = [];
      return {
        kind: 'trades',
        source: this.name,
        trades: t,
        origins: { raw: (i) => raw[i]?.toString('utf8') ?? '', where: (i) => `offset ${at[i]}`, position: (i) => ({ offset: at[i] + 1, line: at[i] + 1 }) },
        end: { offset: at[at.length - 1] + 1, line: at[at.length - 1] + 1 },
      };
    };
    for (const record of records) {
      const offset = Number(record.offset);
      if (!this.synced) {
        if (offset !== this.next) continue;
        this.synced = true;
      }
      if (offset < this.next) continue;
      if (offset > this.next && this.next >= this.from) {
        // Deleted by retention or compaction (or never there): say so, go on.
        const gap: SourceEvent = { kind: 'gap', source: this.name, symbol: `partition ${o.partition}`, expected: String(this.next), received: String(offset), at: o.clock.now() };
        const pending = flush();
        if (pending) yield pending;
        yield gap;
      }
      this.next = offset + 1;
      const meta = readMeta(record.headers);
      const duplicate = meta.run !== undefined && this.remember(`${meta.run}\u0000${meta.seq}`, offset);
      if (offset < this.from) continue; // warm-up: only the duplicate window
      const value = record.value;
      // When the record was received: by the producer's header, else the record's own timestamp. Both
      // come from the log, so a re-read decides the same (Date.now() would not).
      const receivedAt = meta.receivedAt ?? Number(record.timestamp);
      const position = { offset: offset + 1, line: offset + 1 };
      const reject = (reason: RejectedTrade['reason'], detail: string): SourceEvent => ({
        kind: 'rejected',
        rejected: { receivedAt, source: meta.source ?? this.name, reason, detail: `${this.name} offset ${offset}: ${detail}`, raw: capRaw(value === null ? '' : value.toString('utf8')) },
        // The position is this partition's, whatever the record says it came from.
        source: this.name,
        end: position,
      });
      if (duplicate) {
        const pending = flush();
        if (pending) yield pending;
        yield reject('duplicate', `the same record (run ${meta.run}, seq ${meta.seq}) was already read: a retried produce wrote it twice`);
        continue;
      }
      if (o.deadLetter) {
        const pending = flush();
        if (pending) yield pending;
        yield reject(meta.reason ?? 'malformed', meta.detail ?? 'a dead-lettered record without a reason');
        continue;
      }
      // The trade scanner where it can read the value exactly, else parseTrade's verdict (scan-trade.ts).
      const scanned = value === null ? null : this.scanner.scan(value, 0, value.length, receivedAt);
      const parsed =
        scanned !== null ? ({ ok: true, trade: scanned } as const)
        : value === null ? ({ ok: false, reason: 'malformed', detail: 'empty record (no value)' } as const)
        : parseTrade(value, receivedAt); // the bytes: see parseTrade on what is not UTF-8
      if (!parsed.ok) {
        const pending = flush();
        if (pending) yield pending;
        yield reject(parsed.reason, parsed.detail);
        continue;
      }
      const trade = parsed.trade;
      if (trade.receivedAt === undefined) trade.receivedAt = receivedAt;
      trades.push(trade);
      values.push(value);
      offsets.push(offset);
    }
    const pending = flush();
    if (pending) yield pending;
  }

  /** Records (run, seq) at `offset`; true when it was seen within the previous DEDUP_WINDOW offsets. */
  private remember(key: string, offset: number): boolean {
    while (this.recentHead < this.recentOrder.length && this.recentOrder[this.recentHead].offset <= offset - DEDUP_WINDOW) {
      const old = this.recentOrder[this.recentHead++];
      if (this.recent.get(old.key) === old.offset) this.recent.delete(old.key);
    }
    if (this.recentHead > 50_000) {
      this.recentOrder.splice(0, this.recentHead);
      this.recentHead = 0;
    }
    const seen = this.recent.has(key);
    if (!seen) {
      this.recent.set(key, offset);
      this.recentOrder.push({ key, offset });
    }
    return seen;
  }
}
