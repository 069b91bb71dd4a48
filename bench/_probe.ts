import { readLineChunks, openLines } from '../src/sources/replay.js';
import { parseTrade } from '../src/core/parse-trade.js';
import { WindowEngine } from '../src/engine/window-engine.js';
import { DEFAULT_ENGINE_CONFIG } from '../src/engine/contract.js';
import { writeFileSync, readFileSync } from 'node:fs';
const hour = readFileSync('data/kraken-btcusd-2019-07-01.coincap.jsonl', 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
let s = ''; for (let r = 0; r < 375; r++) for (const t of hour) s += JSON.stringify({ ...t, timestamp: t.timestamp + r * 3600000 }) + '\n';
writeFileSync('/tmp/prof/in.jsonl', s);
for (let round = 0; round < 2; round++) {
let t0 = performance.now(); let n = 0;
for await (const lines of readLineChunks(openLines('/tmp/prof/in.jsonl'))) n += lines.length;
console.log('split', n, performance.now() - t0);
t0 = performance.now(); n = 0;
for await (const lines of readLineChunks(openLines('/tmp/prof/in.jsonl'))) for (const l of lines) if (parseTrade(l).ok) n++;
console.log('split+parse', n, performance.now() - t0);
const e = new WindowEngine(DEFAULT_ENGINE_CONFIG);
t0 = performance.now(); n = 0;
for await (const lines of readLineChunks(openLines('/tmp/prof/in.jsonl'))) for (const l of lines) { const r = parseTrade(l); if (r.ok && e.ingest(r.trade)) n++; }
console.log('split+parse+engine', n, performance.now() - t0);
}
