// The benches' input: the bundled real Kraken hour, repeated with its timestamps shifted hour by hour,
// each trade relabelled by `relabel` (another asset, prices scaled), streamed to `path` until n trades.
import { createWriteStream, readFileSync } from 'node:fs';

export type KrakenRow = Record<string, unknown> & { price: number; timestamp: number };

/** Writes n trades: hour `rep`, trade k of it, as `relabel` makes it (timestamps are shifted here). */
export async function writeKrakenHours(path: string, n: number, relabel: (t: KrakenRow, rep: number, k: number) => KrakenRow): Promise<void> {
  const hour = readFileSync(new URL('../data/kraken-btcusd-2019-07-01.coincap.jsonl', import.meta.url), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as KrakenRow);
  const out = createWriteStream(path);
  let written = 0;
  for (let rep = 0; written < n; rep++) {
    const shift = rep * 3_600_000;
    let chunk = '';
    for (let k = 0; k < hour.length && written < n; k++) {
      const t = relabel(hour[k], rep, k);
      chunk += JSON.stringify({ ...t, timestamp: t.timestamp + shift }) + '\n';
      written++;
    }
    if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}
