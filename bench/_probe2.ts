import { DuckDBSink } from '../src/sinks/duckdb/duckdb-sink.js';
import { silentLogger } from '../src/core/logger.js';
import type { Trade } from '../src/core/trade.js';
import { rmSync } from 'node:fs';
rmSync('/tmp/prof/s.duckdb', { force: true });
const sink = new DuckDBSink('/tmp/prof/s.duckdb', silentLogger); await sink.open();
const trades: Trade[] = [];
for (let i = 0; i < 1_000_000; i++) trades.push({ exchange: 'kraken', base: i % 2 ? 'bitcoin' : 'ethereum', quote: 'united-states-dollar', direction: i % 3 ? 'buy' : 'sell', price: 10000 + i / 7, volume: 0.5 + i / 1e7, timestamp: 1561939203172 + i * 100, priceUsd: 10000 + i / 7, receivedAt: 1700000000000 });
const conn = (sink as any).conn;
const orig = conn.run.bind(conn);
conn.run = async (sql: string, ...a: any[]) => { const t = performance.now(); const r = await orig(sql, ...a); console.log('  run', sql.trim().slice(0, 30).replace(/\s+/g, ' '), (performance.now() - t).toFixed(0)); return r; };
for (let k = 0; k < 2; k++) {
const t0 = performance.now();
await sink.write({ batchId: 0, windows: [], trends: [], rejected: [], trades, watermark: 0, final: false });
console.log('write total', performance.now() - t0);
}
await sink.close();
