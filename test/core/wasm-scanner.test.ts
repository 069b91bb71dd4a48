// The WebAssembly trade scanner (wasm/trade-scanner.c through src/core/wasm-scanner.ts): what the
// differential tests (scan-trade.test.ts, piece.test.ts) do not reach. The module must be the build of
// the committed source; its tables can fill up, a piece can outgrow its memory and one call's lines,
// and the limits of validateTrade must hold to the millisecond.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EARLIEST_TRADE_MS, MAX_CLOCK_AHEAD_MS, parseTrade } from '../../src/core/parse-trade.js';
import type { Trade } from '../../src/core/trade.js';
import { KeyTable } from '../../src/core/trade-columns.js';
import { WASM_SCANNER_URL, WasmTradeScanner } from '../../src/core/wasm-scanner.js';
import { scanPiece, tradesByLine } from '../../src/sources/scan-piece.js';

const RECEIVED_AT = Date.UTC(2026, 0, 1);

function hasClang(): boolean {
  try {
    execFileSync('clang', ['--version'], { stdio: 'ignore' });
    execFileSync('wasm-ld', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const line = (fields: Record<string, unknown>) =>
  JSON.stringify({ exchange: 'kraken', base: 'bitcoin', quote: 'united-states-dollar', direction: 'buy', price: 10749.4, volume: 0.004, timestamp: 1561939203172, priceUsd: 10749.4, ...fields });

/** Every line's trade from scanPiece with a new WebAssembly scanner, and how many of them the module itself read. */
function scanAll(lines: string[], receivedAt = RECEIVED_AT): { trades: (Trade | null)[]; byModule: number; ends: number[] } {
  const keys = new KeyTable();
  const scanner = new WasmTradeScanner(keys);
  const data = Buffer.from(lines.join('\n') + '\n');
  // The module's own count: the lines it read, over every call of the piece.
  let byModule = 0;
  const scan = scanner.scan.bind(scanner);
  scanner.scan = (from, at) => {
    const n = scan(from, at);
    byModule += scanner.tradeCount;
    return n;
  };
  const piece = scanPiece(data, receivedAt, scanner, keys);
  return { trades: tradesByLine(piece), byModule, ends: Array.from({ length: piece.lines }, (_, i) => piece.lineEnd(i)) };
}

/** parseTrade's trade for each line, null for a rejected one. */
const plain = (lines: string[], receivedAt = RECEIVED_AT) =>
  lines.map((l) => {
    const v = parseTrade(l, receivedAt);
    return v.ok ? v.trade : null;
  });

describe('the WebAssembly trade scanner', () => {
  it.skipIf(!hasClang() && process.env.CI !== 'true')('is the build of wasm/trade-scanner.c (scripts/build-wasm.sh; needs clang and lld)', () => {
    // In CI the compiler must be there (.ci/run installs it): a module out of step with its source must not land.
    const dir = mkdtempSync(join(tmpdir(), 'coinstream-wasm-'));
    try {
      const out = join(dir, 'trade-scanner.wasm');
      execFileSync('scripts/build-wasm.sh', [out], { stdio: 'pipe' });
      expect(readFileSync(out).equals(readFileSync(WASM_SCANNER_URL)), 'wasm/trade-scanner.wasm is not the build of wasm/trade-scanner.c: run scripts/build-wasm.sh and commit the result').toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads past its string table: once 4096 strings are kept, new ones take the general path with the same trades', () => {
    const lines = Array.from({ length: 5000 }, (_, i) => line({ base: `asset-${i}`, price: i + 1, priceUsd: i + 1 }));
    const { trades, byModule } = scanAll(lines);
    expect(trades).toEqual(plain(lines));
    // kraken and united-states-dollar take two entries of the table, the assets the rest.
    expect(byModule).toBe(4094);
  });

  it('reads past its key table: more (exchange, base) pairs than 16384 keys', () => {
    const lines = Array.from({ length: 17_000 }, (_, i) => line({ exchange: `e${i % 131}`, base: `b${Math.floor(i / 131)}` }));
    const { trades, byModule } = scanAll(lines);
    expect(trades).toEqual(plain(lines));
    expect(byModule).toBe(16_384);
  });

  it('scans a piece larger than its memory and than one call takes (8192 lines), lines of every kind mixed', () => {
    const kinds = [line({}), line({ tradeId: 'T-1', receivedAt: RECEIVED_AT - 5 }), '', 'not json', line({ direction: 'sell' }).replace('"price":10749.4', '"price":-0'), `  ${line({ volume: 1e-7 })}\r`, line({ timestamp: 1 })];
    const lines = Array.from({ length: 60_000 }, (_, i) => (i % 997 === 0 ? line({ base: 'x'.repeat(200) + i }) : kinds[i % kinds.length]));
    expect(Buffer.byteLength(lines.join('\n'))).toBeGreaterThan(6 * 2 ** 20);
    const { trades, byModule, ends } = scanAll(lines);
    const expected = plain(lines.map((l) => l.replace(/\r$/, '')));
    expect(trades).toEqual(expected);
    // A price of -0 is rejected now (price must be > 0), by the module as by parseTrade.
    expect(trades[4]).toBeNull();
    // Every line ends where the next starts.
    let at = 0;
    lines.forEach((l, i) => {
      at += Buffer.byteLength(l) + 1;
      expect(ends[i]).toBe(at);
    });
    // The module read every trade but the over-long asset names (the general path's, and invalid).
    expect(byModule).toBe(expected.filter((t) => t !== null).length);
  });

  it('gives tradeId and receivedAt columns for the trades that have them only', () => {
    const lines = [line({}), line({ tradeId: 'A1' }), line({ receivedAt: 1561939203500 }), line({}), line({ tradeId: 'B-2', receivedAt: 1561939203600 })];
    const { trades, byModule } = scanAll(lines);
    expect(byModule).toBe(5);
    expect(trades.map((t) => [t!.tradeId, t!.receivedAt])).toEqual([
      [undefined, undefined],
      ['A1', undefined],
      [undefined, 1561939203500],
      [undefined, undefined],
      ['B-2', 1561939203600],
    ]);
  });

  it('holds validateTrade limits to the millisecond: the last accepted time is read here, the next one is left to parseTrade, which rejects it', () => {
    const at = (timestamp: number) => line({ timestamp });
    const lines = [at(RECEIVED_AT + MAX_CLOCK_AHEAD_MS), at(RECEIVED_AT + MAX_CLOCK_AHEAD_MS + 1), at(EARLIEST_TRADE_MS), at(EARLIEST_TRADE_MS - 1), at(RECEIVED_AT + 0.5)];
    const { trades, byModule } = scanAll(lines);
    expect(trades.map((t) => t !== null)).toEqual([true, false, true, false, false]);
    expect(trades).toEqual(plain(lines));
    expect(byModule).toBe(2);
  });
});
