import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import type { SourceEvent } from '../../src/sources/contract.js';
import { ReplaySource } from '../../src/sources/replay.js';
import { parseTrade } from '../../src/core/parse-trade.js';
import { seededRandom } from '../../src/core/random.js';
import { readLineChunks } from '../../src/sources/line-reader.js';

const dir = mkdtempSync(join(tmpdir(), 'coinstream-replay-'));
/** Event times are offsets from 2019-07-01 (times before 2009 are rejected as implausible). */
const T0 = Date.UTC(2019, 6, 1);
const t = (ts: number, price = 100) => JSON.stringify({ exchange: 'x', base: 'bitcoin', quote: 'tether', direction: 'sell', price, volume: 1, timestamp: T0 + ts, priceUsd: price });

/** A ManualClock that reports every sleep asked of it, so a test moves time exactly when something waits. */
class WatchedClock extends ManualClock {
  private sleeps: number[] = [];
  private onSleep: (() => void) | null = null;
  override sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    this.onSleep?.();
    return super.sleep(ms, signal);
  }
  /** The length of the next sleep asked for, oldest first; waits for one if none is pending. */
  async nextSleep(): Promise<number> {
    while (this.sleeps.length === 0) await new Promise<void>((r) => (this.onSleep = r));
    this.onSleep = null;
    return this.sleeps.shift()!;
  }
}

async function drain(source: ReplaySource): Promise<SourceEvent[]> {
  const events: SourceEvent[] = [];
  for await (const e of source.events(new AbortController().signal)) events.push(e);
  return events;
}

describe('readLineChunks', () => {
  it('splits LF and CRLF lines and reassembles UTF-8 split across chunks', async () => {
    const text = Buffer.from('a\r\nb€c\nlast');
    const euro = text.indexOf(0xe2);
    const chunks = [text.subarray(0, euro + 1), text.subarray(euro + 1)];
    const lines: string[] = [];
    for await (const batch of readLineChunks(Readable.from(chunks))) lines.push(...batch);
    expect(lines).toEqual(['a', 'b€c', 'last']);
  });
});

describe('ReplaySource', () => {
  it('reads plain and gzip files alike, keeping rejects with their line number', async () => {
    const body = [t(1000), '', 'not json', t(2000), '  '].join('\n') + '\n';
    writeFileSync(join(dir, 'a.jsonl'), body);
    writeFileSync(join(dir, 'a.jsonl.gz'), gzipSync(body));
    for (const name of ['a.jsonl', 'a.jsonl.gz']) {
      const events = await drain(new ReplaySource({ path: join(dir, name) }));
      const trades = events.flatMap((e) => (e.kind === 'trades' ? [...e.trades] : []));
      const rejected = events.flatMap((e) => (e.kind === 'rejected' ? [e.rejected] : []));
      expect(trades.map((x) => x.timestamp - T0)).toEqual([1000, 2000]);
      expect(rejected).toHaveLength(1);
      expect(rejected[0]).toMatchObject({ reason: 'malformed', raw: 'not json', source: `replay:${join(dir, name)}` });
      expect(rejected[0].detail).toMatch(/^line 3: /);
    }
  });

  it('gives every line the verdict a JSON.parse of that line alone gives, whatever its neighbours', async () => {
    // Lines that break a joined JSON array in different ways, among good trades, at random places.
    const tricky = ['', '  ', '1,2', '3,{}', '[1,2]', '{"a":1} {"b":2}', '1],[2', 'null', '"x"', '{', t(5).replace('}', ',}'), t(7).replace('"sell"', '"sideways"'), t(9) + '\r'];
    const random = seededRandom(11);
    const files: string[][] = [];
    // Each tricky line alone among good trades (it decides its piece's path), then all of them mixed.
    for (const bad of tricky) files.push(Array.from({ length: 300 }, (_, i) => (i === 150 ? bad : t(i * 10, 100 + (i % 13)))));
    files.push(Array.from({ length: 3000 }, (_, i) => (random() < 0.02 ? tricky[Math.floor(random() * tricky.length)] : t(i * 10, 100 + (i % 13)))));
    const kinds = new Set<string>();
    for (const [n, lines] of files.entries()) {
      writeFileSync(join(dir, `tricky-${n}.jsonl`), lines.join('\n') + '\n');
      const events = await drain(new ReplaySource({ path: join(dir, `tricky-${n}.jsonl`) }));
      // Trades in order, rejects in order (a piece's rejects may be reported before its trades).
      const trades = events.flatMap((e) => (e.kind === 'trades' ? e.trades.map((x) => JSON.stringify(x)) : []));
      const rejects = events.flatMap((e) => (e.kind === 'rejected' ? [`${e.rejected.reason} ${e.rejected.detail} ${e.rejected.raw}`] : []));
      const verdicts = lines.map((line) => (line.trim() === '' ? null : parseTrade(line)));
      expect(trades).toEqual(verdicts.flatMap((r) => (r?.ok ? [JSON.stringify(r.trade)] : [])));
      expect(rejects).toEqual(verdicts.flatMap((r, i) => (r && !r.ok ? [`${r.reason} line ${i + 1}: ${r.detail} ${lines[i]}`] : [])));
      for (const r of rejects) kinds.add(r.split(' ')[0]);
    }
    expect(kinds).toEqual(new Set(['malformed', 'invalid']));
  });

  it('gives every event the position after it, and reading from there yields exactly the rest (plain and gzip)', async () => {
    // Trades, rejects, blank lines, CRLF, multi-byte text and an over-long line, in pieces of many sizes.
    const random = seededRandom(21);
    const kinds = [() => t(Math.floor(random() * 1e6)), () => 'not json €', () => '', () => t(5) + '\r', () => '{"ü":"' + 'é'.repeat(40) + '"}', () => 'x'.repeat(3000)];
    const lines = Array.from({ length: 6000 }, () => kinds[random() < 0.8 ? 0 : 1 + Math.floor(random() * (kinds.length - 1))]());
    lines.push(t(7)); // a whole last line: one that is not would be held back as unfinished (tested below)
    const body = lines.join('\n'); // no newline after the last line
    /** Each record as text: the trade's time, or the rejection with its line number. */
    const records = (events: SourceEvent[]) =>
      events.flatMap((e) => (e.kind === 'trades' ? e.trades.map((x) => `t${x.timestamp}`) : e.kind === 'rejected' ? [`${e.rejected.reason} ${e.rejected.detail.split(':')[0]}`] : []));
    for (const [name, bytes] of [['pos.jsonl', Buffer.from(body)], ['pos.jsonl.gz', gzipSync(body)]] as const) {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      const read = async (from?: { offset: number; line: number }) => {
        const events: SourceEvent[] = [];
        for await (const e of new ReplaySource({ path, maxLineBytes: 2000 }).events(new AbortController().signal, from)) events.push(e);
        return events;
      };
      const all = await read();
      expect(records(all).filter((r) => r.startsWith('malformed')).length).toBeGreaterThan(100);
      const ends = all.map((e) => (e.kind === 'trades' || e.kind === 'rejected' ? e.end : undefined));
      expect(ends.every(Boolean)).toBe(true);
      expect(ends.at(-1)).toMatchObject({ offset: Buffer.byteLength(body), line: lines.length });
      // Positions only grow, and every record after an event's end is exactly what reading from it gives.
      for (let i = 1; i < ends.length; i++) expect(ends[i]!.offset).toBeGreaterThan(ends[i - 1]!.offset);
      for (const k of [0, 1, 7, Math.floor(all.length / 2), all.length - 2, all.length - 1]) {
        expect(records(await read(ends[k]))).toEqual(records(all.slice(k + 1)));
      }
      // Inside an event too: after trade i of it, as a batch cut there would store.
      const big = all.findIndex((e) => e.kind === 'trades' && e.trades.length > 10);
      const event = all[big] as Extract<SourceEvent, { kind: 'trades' }>;
      const rest = [...[...event.trades].slice(4).map((x) => `t${x.timestamp}`), ...records(all.slice(big + 1))];
      expect(records(await read(event.origins!.position!(3)))).toEqual(rest);
    }
  });

  it('skips a UTF-8 byte order mark at the start of a file (plain and gzip), and positions stay byte offsets', async () => {
    const lines = [t(1000, 100), t(2000, 101), t(3000, 102)];
    const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(lines.join('\n') + '\n')]);
    for (const [name, bytes] of [['bom.jsonl', body], ['bom.jsonl.gz', gzipSync(body)]] as const) {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      const events = await drain(new ReplaySource({ path }));
      expect(events.every((e) => e.kind === 'trades')).toBe(true);
      const trades = events.flatMap((e) => (e.kind === 'trades' ? [...e.trades] : []));
      expect(trades.map((x) => x.price)).toEqual([100, 101, 102]);
      const first = events[0] as Extract<SourceEvent, { kind: 'trades' }>;
      // After the first line: the BOM's 3 bytes and the line's own.
      expect(first.origins!.position!(0)).toMatchObject({ offset: 3 + lines[0].length + 1, line: 1 });
      expect(first.end).toMatchObject({ offset: body.length, line: 3 });
    }
    // Only at the start: the same bytes before a later line are that line's, and it is refused.
    const path = join(dir, 'bom-inside.jsonl');
    writeFileSync(path, Buffer.concat([Buffer.from(lines[0] + '\n'), Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(lines[1] + '\n')]));
    const events = await drain(new ReplaySource({ path }));
    expect(events.map((e) => e.kind)).toEqual(['trades', 'rejected']);
  });

  it('holds back a last line that is not whole yet (plain, and a .gz cut while written), and reads it whole from the position before it', async () => {
    const lines = [t(1000, 100), t(2000, 101), t(3000, 102)];
    const whole = lines.join('\n') + '\n';
    const cut = whole.length - 30; // inside the last line
    const cases = [
      ['held.jsonl', Buffer.from(whole.slice(0, cut)), Buffer.from(whole)],
      // A .gz flushed mid-line (as a writer's gzip stream is), not yet ended: damaged at its end.
      ['held.jsonl.gz', gzipSync(whole.slice(0, cut)).subarray(0, -8), gzipSync(whole)],
    ] as const;
    for (const [name, partial, finished] of cases) {
      const path = join(dir, name);
      writeFileSync(path, partial);
      const events = await drain(new ReplaySource({ path }));
      const read = events.flatMap((e) => (e.kind === 'trades' ? [...e.trades].map((x): number | string => x.price) : e.kind === 'rejected' ? ['rejected'] : []));
      expect(read, name).toEqual([100, 101]);
      const damaged = events.filter((e) => e.kind === 'damaged').map((e) => (e as Extract<SourceEvent, { kind: 'damaged' }>).detail);
      expect(damaged, name).toHaveLength(1);
      expect(damaged[0]).toMatch(name.endsWith('.gz') ? /-byte line it cut short is left unread/ : /line 3 \(its last, \d+ bytes\) has no newline and is not a whole message: left unread/);
      const end = events.filter((e) => e.kind === 'trades').at(-1)!.end!;
      expect(end).toMatchObject({ offset: lines[0].length + lines[1].length + 2, line: 2 });
      writeFileSync(path, finished);
      const rest: SourceEvent[] = [];
      for await (const e of new ReplaySource({ path }).events(new AbortController().signal, end)) rest.push(e);
      expect(rest.flatMap((e) => (e.kind === 'trades' ? [...e.trades].map((x): number | string => x.price) : [e.kind]))).toEqual([102]);
    }
    // A blank last line without a newline is a blank line, not an unfinished one.
    const blank = join(dir, 'blank-tail.jsonl');
    writeFileSync(blank, lines[0] + '\n  ');
    expect((await drain(new ReplaySource({ path: blank }))).map((e) => e.kind)).toEqual(['trades']);
  });

  it('goes on after a whole last line read without its line end: the line end written since is that line\'s (LF or CRLF), line numbers as in one read', async () => {
    const lines = [t(1000, 100), t(2000, 101)];
    for (const eol of ['\n', '\r\n']) {
      const path = join(dir, `eol-${eol.length}.jsonl`);
      writeFileSync(path, lines.join(eol)); // the last line whole, its line end not written yet
      const first = await drain(new ReplaySource({ path }));
      const end = (first.at(-1) as Extract<SourceEvent, { kind: 'trades' }>).end!;
      expect(end).toMatchObject({ line: 2 });
      writeFileSync(path, lines.join(eol) + eol + 'not json' + eol + t(3000, 102) + eol);
      const rest: string[] = [];
      for await (const e of new ReplaySource({ path }).events(new AbortController().signal, end)) {
        if (e.kind === 'trades') rest.push(...[...e.trades].map((x) => String(x.price)));
        if (e.kind === 'rejected') rest.push(e.rejected.detail.split(':')[0]);
      }
      // Before: "line 4" (the line end read as an empty line 3), and with CRLF a refusal (exit 2).
      expect(rest, JSON.stringify(eol)).toEqual(['line 3', '102']);
    }
  });

  it('holds back an unfinished last line longer than --max-line too, and rejects it once it is finished', async () => {
    const path = join(dir, 'long-unfinished.jsonl');
    const long = `{"note":"${'x'.repeat(3000)}"}`;
    writeFileSync(path, t(1000, 100) + '\n' + long.slice(0, 2000));
    const first = await drain(new ReplaySource({ path, maxLineBytes: 1024 }));
    expect(first.map((e) => e.kind)).toEqual(['trades', 'damaged']);
    const end = (first[0] as Extract<SourceEvent, { kind: 'trades' }>).end!;
    writeFileSync(path, t(1000, 100) + '\n' + long + '\n' + t(2000, 101) + '\n');
    const rest: string[] = [];
    for await (const e of new ReplaySource({ path, maxLineBytes: 1024 }).events(new AbortController().signal, end)) {
      if (e.kind === 'trades') rest.push(...[...e.trades].map((x) => String(x.price)));
      if (e.kind === 'rejected') rest.push(e.rejected.detail.replace(/;.*/, ''));
    }
    // Before: 2000 of its bytes were rejected as the whole line, and the next run was refused.
    expect(rest).toEqual([`line 2: longer than the limit of 1024 bytes (${long.length} bytes`, '101']);
  });

  it('refuses to resume in a file whose first line changed, even where the stored offset starts a line in it (copytruncate, then new lines)', async () => {
    const lines = [t(1000, 100), t(2000, 101), t(3000, 102), t(4000, 103)];
    for (const name of ['rotated.jsonl', 'rotated.jsonl.gz']) {
      const path = join(dir, name);
      const write = (text: string) => writeFileSync(path, name.endsWith('.gz') ? gzipSync(text) : Buffer.from(text));
      write(lines.slice(0, 2).join('\n') + '\n');
      const end = (await drain(new ReplaySource({ path }))).at(-1)!;
      const position = (end as Extract<SourceEvent, { kind: 'trades' }>).end!;
      expect(position.firstLine).toMatch(/^\d+:[0-9a-f]{8}$/);
      // The same lengths, other lines first: the stored offset falls where a line starts.
      write([lines[1], lines[0], lines[2], lines[3]].join('\n') + '\n');
      const read = async () => {
        for await (const e of new ReplaySource({ path }).events(new AbortController().signal, position)) void e;
      };
      await expect(read(), name).rejects.toThrow(/stopped at byte \d+ \(after line 2\) of this file, but its first line is not the one it had then: the file was replaced, rotated or edited since/);
      // The file as it was, grown: read on from the position.
      write(lines.join('\n') + '\n');
      const rest: number[] = [];
      for await (const e of new ReplaySource({ path }).events(new AbortController().signal, position)) if (e.kind === 'trades') rest.push(...[...e.trades].map((x) => x.price));
      expect(rest).toEqual([102, 103]);
    }
  });

  it('refuses a missing file with SOURCE_NOT_FOUND', () => {
    expect(() => new ReplaySource({ path: join(dir, 'nope.jsonl') })).toThrow(/replay file not found/);
  });
});

describe('ReplaySource over many reads', () => {
  it("keeps every trade's line readable after the whole file was read (late trades need it; the reader must not reuse that memory)", async () => {
    // ~3.5 MiB: several 1 MiB reads, with lines cut across them.
    const lines: string[] = [];
    // The length is kept as lines are added (joining them all per line took minutes on a slow machine).
    for (let i = 0, length = 0; length < 3.5 * 2 ** 20; i++) {
      lines.push(t(i * 10, 100 + (i % 97)) + ' '.repeat(i % 13));
      length += lines[i].length + 1;
    }
    const file = join(dir, 'many-reads.jsonl');
    writeFileSync(file, lines.join('\n') + '\n');
    const events = await drain(new ReplaySource({ path: file, clock: new ManualClock(T0 + 86_400_000) }));
    const raws: string[] = [];
    for (const e of events) if (e.kind === 'trades') for (let i = 0; i < e.trades.length; i++) raws.push(e.origins!.raw(i));
    expect(raws).toHaveLength(lines.length);
    expect(raws).toEqual(lines);
  });
});

describe('ReplaySource origins', () => {
  it('names each trade\'s own line, text and position, with blank and rejected lines among them', async () => {
    const random = seededRandom(7);
    const lines: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const r = random();
      lines.push(r < 0.1 ? '' : r < 0.15 ? '   ' : r < 0.18 ? `not json ${i}` : t(i * 10, 100 + (i % 89)));
    }
    const file = join(dir, 'origins.jsonl');
    writeFileSync(file, lines.join('\n') + '\n');
    // Byte offset after each line (1-based line numbers).
    const after: number[] = [];
    lines.reduce((offset, l) => (after.push(offset + Buffer.byteLength(l) + 1), offset + Buffer.byteLength(l) + 1), 0);
    const events = await drain(new ReplaySource({ path: file, clock: new ManualClock(T0 + 86_400_000) }));
    const seen: string[] = [];
    for (const e of events) {
      if (e.kind !== 'trades') continue;
      for (let i = 0; i < e.trades.length; i++) {
        const where = e.origins!.where(i)!;
        const n = Number(/^line (\d+)$/.exec(where)![1]);
        const { offset, line } = e.origins!.position!(i);
        seen.push(`${n} ${e.origins!.raw(i) === lines[n - 1]} ${offset === after[n - 1] && line === n}`);
      }
    }
    const tradeLines = lines.flatMap((l, k) => (l.startsWith('{') ? [`${k + 1} true true`] : []));
    expect(seen).toEqual(tradeLines);
  });
});
