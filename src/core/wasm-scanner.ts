// The replay's trade scanner in WebAssembly: wasm/trade-scanner.c, the JavaScript scanner of
// scan-trade.ts step for step, run over a whole piece of lines per call. The per-line work of reading
// a trade (keys, strings, digits) is the largest cost of a replay's thread, and there the C code,
// compiled ahead of time, needs a fraction of the JIT-compiled JavaScript's time, and no warm-up.
//
// What stays here: copying a piece into the module's memory, and the results out of it a column at a
// time, keys mapped to the caller's KeyTable. Lines the module leaves (status 0) are judged by the
// caller on the general path, as with the JavaScript scanner (scan-piece.ts), so every verdict and
// every value is parseTrade's; test/core/wasm-scanner.test.ts holds the two scanners equal line by line.
import { readFileSync } from 'node:fs';
import { EARLIEST_TRADE_MS, MAX_CLOCK_AHEAD_MS, MAX_ID_CHARS, MAX_MAGNITUDE, MIN_MAGNITUDE } from './parse-trade.js';
import type { KeyTable, TradeColumns } from './trade-columns.js';

/** Built from wasm/trade-scanner.c by scripts/build-wasm.sh (committed: installing needs no compiler). From src/core or dist/core alike. */
export const WASM_SCANNER_URL = new URL('../../wasm/trade-scanner.wasm', import.meta.url);

/** trade-scanner.c's NONE: a trade without a tradeId. */
const NONE = 0xffffffff;
const PAGE_BYTES = 65536;

interface ScannerExports {
  memory: WebAssembly.Memory;
  init(minMagnitude: number, maxMagnitude: number, earliestMs: number, clockAheadMs: number, maxIdChars: number): void;
  scan(from: number, length: number, receivedAt: number): number;
  trades(): number;
  key_count_(): number;
  input_base(): number;
  line_ends(): number;
  line_statuses(): number;
  prices(): number;
  volumes(): number;
  timestamps(): number;
  prices_usd(): number;
  received_ats(): number;
  keys(): number;
  trade_id_starts(): number;
  trade_id_lengths(): number;
  key_exchanges(): number;
  key_bases(): number;
  key_quotes(): number;
  key_sells(): number;
  string_starts(): number;
  string_lengths(): number;
  arena_base(): number;
}

/** Typed arrays over the module's memory; made again whenever the memory grows (its old buffer is detached then). */
interface Views {
  buffer: ArrayBuffer;
  lineEnds: Uint32Array;
  statuses: Uint8Array;
  price: Float64Array;
  volume: Float64Array;
  timestamp: Float64Array;
  priceUsd: Float64Array;
  receivedAt: Float64Array;
  key: Uint32Array;
  tradeIdStart: Uint32Array;
  tradeIdLength: Uint32Array;
  keyExchange: Uint32Array;
  keyBase: Uint32Array;
  keyQuote: Uint32Array;
  keySell: Uint8Array;
  stringStart: Uint32Array;
  stringLength: Uint32Array;
}

/** Lines per scan call and the size of the module's tables (trade-scanner.c's MAX_LINES, MAX_KEYS, MAX_STRINGS). */
const MAX_LINES = 8192;
const MAX_KEYS = 16384;
const MAX_STRINGS = 4096;

let compiled: WebAssembly.Module | null = null;

/**
 * Scans pieces of lines (one thread's: each instance has its own module memory) into one KeyTable.
 * Use: load(piece), then scan() from a line start until the piece is done; after each scan(),
 * lineEnd/isTrade tell about its lines, and appendTrades copies its trades out.
 */
export class WasmTradeScanner {
  private readonly x: ScannerExports;
  private views: Views;
  private loaded = 0;
  /** The module's string ids as JavaScript strings, made once each. */
  private readonly strings: (string | undefined)[] = new Array(MAX_STRINGS);
  /** The module's key ids as ids of `keys`; keys [0, knownKeys) are mapped. */
  private readonly keyIds = new Uint32Array(MAX_KEYS);
  private knownKeys = 0;
  /** Lines and trades of the last scan(). */
  lines = 0;
  tradeCount = 0;

  constructor(private readonly keys: KeyTable) {
    compiled ??= new WebAssembly.Module(readFileSync(WASM_SCANNER_URL));
    this.x = new WebAssembly.Instance(compiled, {}).exports as unknown as ScannerExports;
    this.x.init(MIN_MAGNITUDE, MAX_MAGNITUDE, EARLIEST_TRADE_MS, MAX_CLOCK_AHEAD_MS, MAX_ID_CHARS);
    this.views = this.makeViews();
  }

  /** Copies a piece of whole lines into the module, replacing the last one. */
  load(data: Uint8Array): void {
    const need = this.x.input_base() + data.length;
    const have = this.x.memory.buffer.byteLength;
    if (need > have) this.x.memory.grow(Math.ceil((need - have) / PAGE_BYTES));
    if (this.views.buffer !== this.x.memory.buffer) this.views = this.makeViews();
    new Uint8Array(this.x.memory.buffer, this.x.input_base(), data.length).set(data);
    this.loaded = data.length;
  }

  /**
   * Scans the loaded piece's lines from byte `from` (a line start), as many as one call takes: returns
   * how many. Line j of the call ends at lineEnd(j) (after its LF); isTrade(j) says whether the module
   * read it as a trade, or left it to the general path.
   */
  scan(from: number, receivedAt: number): number {
    this.lines = this.x.scan(from, this.loaded, receivedAt);
    this.tradeCount = this.x.trades();
    return this.lines;
  }

  /** The piece's line ends of the last scan(), as a view of the module's memory (valid until the next call). */
  lineEnds(): Uint32Array {
    return this.views.lineEnds.subarray(0, this.lines);
  }

  /** 1 where the last scan() read the line as a trade, 0 where the general path must judge it (a view, as lineEnds). */
  statuses(): Uint8Array {
    return this.views.statuses.subarray(0, this.lines);
  }

  /**
   * Appends trades [from, to) of the last scan() (in line order) to `out`, whose keys are this
   * scanner's KeyTable's. `data` is the loaded piece: a trade's tradeId is read from it.
   */
  appendTrades(out: TradeColumns, from: number, to: number, data: Buffer): void {
    const n = to - from;
    if (n <= 0) return;
    this.learnKeys();
    const v = this.views;
    const at = out.length;
    out.reserve(at + n);
    out.price.set(v.price.subarray(from, to), at);
    out.volume.set(v.volume.subarray(from, to), at);
    out.timestamp.set(v.timestamp.subarray(from, to), at);
    out.priceUsd.set(v.priceUsd.subarray(from, to), at);
    out.receivedAt.set(v.receivedAt.subarray(from, to), at);
    const { key } = out;
    const { keyIds } = this;
    const wasmKey = v.key;
    for (let i = 0; i < n; i++) key[at + i] = keyIds[wasmKey[from + i]];
    const { tradeIdStart, tradeIdLength } = v;
    for (let i = 0; i < n; i++) {
      const length = tradeIdLength[from + i];
      if (length !== NONE) {
        out.tradeId ??= new Array<string | null>(at + i).fill(null);
        const start = tradeIdStart[from + i];
        out.tradeId[at + i] = data.toString('latin1', start, start + length);
      } else if (out.tradeId !== null) {
        out.tradeId[at + i] = null;
      }
    }
    out.length = at + n;
  }

  /** Gives the module's keys that are new since the last call their ids in the KeyTable. */
  private learnKeys(): void {
    const count = this.x.key_count_();
    const v = this.views;
    for (let k = this.knownKeys; k < count; k++) {
      this.keyIds[k] = this.keys.idOf(this.string(v.keyExchange[k]), this.string(v.keyBase[k]), this.string(v.keyQuote[k]), v.keySell[k] === 1 ? 'sell' : 'buy');
    }
    this.knownKeys = count;
  }

  private string(id: number): string {
    let text = this.strings[id];
    if (text === undefined) {
      const start = this.x.arena_base() + this.views.stringStart[id];
      text = Buffer.from(this.x.memory.buffer, start, this.views.stringLength[id]).toString('latin1');
      this.strings[id] = text;
    }
    return text;
  }

  private makeViews(): Views {
    const { x } = this;
    const buffer = x.memory.buffer;
    const u32 = (at: number, n: number) => new Uint32Array(buffer, at, n);
    const f64 = (at: number) => new Float64Array(buffer, at, MAX_LINES);
    return {
      buffer,
      lineEnds: u32(x.line_ends(), MAX_LINES),
      statuses: new Uint8Array(buffer, x.line_statuses(), MAX_LINES),
      price: f64(x.prices()),
      volume: f64(x.volumes()),
      timestamp: f64(x.timestamps()),
      priceUsd: f64(x.prices_usd()),
      receivedAt: f64(x.received_ats()),
      key: u32(x.keys(), MAX_LINES),
      tradeIdStart: u32(x.trade_id_starts(), MAX_LINES),
      tradeIdLength: u32(x.trade_id_lengths(), MAX_LINES),
      keyExchange: u32(x.key_exchanges(), MAX_KEYS),
      keyBase: u32(x.key_bases(), MAX_KEYS),
      keyQuote: u32(x.key_quotes(), MAX_KEYS),
      keySell: new Uint8Array(buffer, x.key_sells(), MAX_KEYS),
      stringStart: u32(x.string_starts(), MAX_STRINGS),
      stringLength: u32(x.string_lengths(), MAX_STRINGS),
    };
  }
}
