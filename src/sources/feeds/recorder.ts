// `coinstream record`: writes what live sources receive to JSONL (gzip when the name ends in .gz),
// one trade message per line, rotating to a new numbered file past a size. What the record holds is
// exactly what `--source replay:FILE` and `replay-server` read back.
import { createWriteStream, type WriteStream } from 'node:fs';
import { createGzip, type Gzip } from 'node:zlib';
import type { Logger } from '../../core/logger.js';
import { tradeToJson } from '../../core/trade.js';
import type { Source } from '../contract.js';
import { mergeEvents } from '../merge.js';

export interface RecordOptions {
  out: string;
  /** Start a new file once this many bytes (uncompressed) went to the current one. */
  rotateBytes: number;
  signal: AbortSignal;
  logger: Logger;
}

/** `trades.jsonl.gz`, then `trades.1.jsonl.gz`, `trades.2.jsonl.gz`, … */
export function rotatedName(out: string, index: number): string {
  if (index === 0) return out;
  const m = /^(.*?)(\.jsonl(?:\.gz)?)$/.exec(out);
  return m ? `${m[1]}.${index}${m[2]}` : `${out}.${index}`;
}

class RotatingFile {
  private index = 0;
  private bytes = 0;
  private file: WriteStream;
  private gzip: Gzip | null = null;
  readonly written: string[] = [];

  constructor(private readonly out: string, private readonly rotateBytes: number) {
    this.file = this.open();
  }

  private open(): WriteStream {
    const name = rotatedName(this.out, this.index);
    this.written.push(name);
    const file = createWriteStream(name);
    if (name.endsWith('.gz')) {
      this.gzip = createGzip();
      this.gzip.pipe(file);
    } else {
      this.gzip = null;
    }
    return file;
  }

  async write(text: string): Promise<void> {
    const target = this.gzip ?? this.file;
    if (!target.write(text)) await new Promise((r) => target.once('drain', r));
    this.bytes += Buffer.byteLength(text);
    if (this.bytes >= this.rotateBytes) {
      await this.close();
      this.index++;
      this.bytes = 0;
      this.file = this.open();
    }
  }

  async close(): Promise<void> {
    const file = this.file;
    const done = new Promise<void>((resolve, reject) => {
      file.once('finish', resolve);
      file.once('error', reject);
    });
    if (this.gzip) this.gzip.end();
    else file.end();
    await done;
  }
}

export async function recordSources(sources: Source[], o: RecordOptions): Promise<{ trades: number; files: string[] }> {
  const out = new RotatingFile(o.out, o.rotateBytes);
  let trades = 0;
  try {
    for await (const event of mergeEvents(sources.map((s) => s.events(o.signal)))) {
      if (event.kind !== 'trades') continue;
      let text = '';
      for (const t of event.trades) text += tradeToJson(t) + '\n';
      await out.write(text);
      trades += event.trades.length;
    }
  } finally {
    await out.close();
  }
  o.logger.info({ trades, files: out.written }, `recorded ${trades} trades`);
  return { trades, files: out.written };
}
