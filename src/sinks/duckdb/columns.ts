// Appends rows to a DuckDB table column by column, straight from typed arrays.
//
// DuckDB's appender takes data chunks of up to 2048 rows. The generic way to fill one (a JS value per
// cell, converted one by one) cost ~110 ns per cell here; fixed-width columns are instead copied into
// the chunk's vectors with one memcpy each, and only strings go cell by cell.

import type { DataChunk, Vector } from '@duckdb/node-bindings';
import { duckdbBindings as duckdb } from './duckdb-api.js';
import type { AppendingConnection } from './lean.js';
import { isTyped, NO_STRING, type Column } from './store-batch.js';

export type { Column };

const { BIGINT, BOOLEAN, DOUBLE, INTEGER, TIMESTAMP, UINTEGER, VARCHAR } = duckdb.Type;

/** DuckDB's standard vector size: a data chunk holds at most this many rows. */
const CHUNK_ROWS = 2048;

const TYPES: Record<Column['kind'], number> = { double: DOUBLE, timestamp: TIMESTAMP, bigint: BIGINT, integer: INTEGER, uinteger: UINTEGER, boolean: BOOLEAN, varchar: VARCHAR, dictionary: VARCHAR };

/** Reused per chunk: int64 values (as two 32-bit halves) and validity bits. */
const int64Scratch = new ArrayBuffer(CHUNK_ROWS * 8);
const int64Low = new Uint32Array(int64Scratch);
const int64High = new Int32Array(int64Scratch);
const int32Values = new Int32Array(int64Scratch);
const int64View = new DataView(int64Scratch);
const copyScratch = new ArrayBuffer(CHUNK_ROWS * 8);
const validityScratch = new ArrayBuffer(CHUNK_ROWS / 8);
const validityBytes = new Uint8Array(validityScratch);

/**
 * One data chunk per column layout, refilled for every 2048 rows. A chunk's memory is freed only when
 * V8 collects its handle, so a fresh chunk per 2048 rows meant fresh pages for every one of them
 * (a quarter of all page faults while writing trades).
 */
const chunks = new Map<string, { chunk: DataChunk }>();

function reusableChunk(columns: readonly Column[]): { chunk: DataChunk } {
  const layout = columns.map((c) => c.kind).join(',');
  let chunk = chunks.get(layout);
  if (!chunk) {
    chunk = { chunk: duckdb.create_data_chunk(columns.map((c) => duckdb.create_logical_type(TYPES[c.kind]))) };
    chunks.set(layout, chunk);
  }
  return chunk;
}

/** Appends rows [0, length) of the columns (in the table's column order) within the caller's transaction. */
export async function appendColumns(conn: AppendingConnection, table: string, columns: readonly Column[], length: number): Promise<void> {
  if (length === 0) return;
  const chunk = reusableChunk(columns);
  // A dictionary's values in DuckDB's string_t form, made once per append rather than per chunk.
  const inline = columns.map((column) => (column.kind === 'dictionary' ? inlineForms(column.values) : null));
  const appender = await conn.createAppender(table);
  try {
    for (let from = 0; from < length; from += CHUNK_ROWS) {
      const n = Math.min(CHUNK_ROWS, length - from);
      duckdb.data_chunk_reset(chunk.chunk);
      duckdb.data_chunk_set_size(chunk.chunk, n);
      columns.forEach((column, i) => fillVector(duckdb.data_chunk_get_vector(chunk.chunk, i), column, from, n, inline[i]));
      appender.appendDataChunk(chunk); // the appender copies the rows: the chunk can be refilled
    }
    appender.flushSync();
  } catch (err) {
    // Closing a failed appender throws too ("transaction is aborted"): that must not replace the
    // error that says what was wrong, so it is only attached to it.
    try {
      appender.closeSync();
    } catch (closeErr) {
      (err as Error & { closeError?: unknown }).closeError = closeErr;
    }
    throw err;
  }
  appender.closeSync();
}

/** `inline`: a dictionary column's values as inlineForms gives them. */
function fillVector(vector: Vector, column: Column, from: number, n: number, inline: Uint32Array | null): void {
  switch (column.kind) {
    case 'double': {
      const { values, nanIsNull } = column;
      copyFixed(vector, values, from, n);
      if (nanIsNull) setNaNAsNull(vector, values, from, n);
      return;
    }
    case 'uinteger':
    case 'boolean':
      copyFixed(vector, column.values, from, n);
      return;
    case 'timestamp':
    case 'bigint': {
      const { kind, values } = column;
      const nanIsNull = kind === 'timestamp' && column.nanIsNull === true;
      toInt64Scratch(values, kind === 'timestamp' ? 1000 : 1, from, n); // DuckDB timestamps are microseconds
      duckdb.copy_data_to_vector(vector, 0, int64Scratch, 0, n * 8);
      if (nanIsNull) setNaNAsNull(vector, values, from, n);
      return;
    }
    case 'integer': {
      toInt32Scratch(column.values, from, n);
      duckdb.copy_data_to_vector(vector, 0, int64Scratch, 0, n * 4);
      return;
    }
    case 'varchar': {
      const values = column.values;
      if (values === null) {
        setAllNull(vector, n);
        return;
      }
      let nulls = false;
      for (let i = 0; i < n; i++) {
        const v = values[from + i];
        if (v === null) nulls = true;
        else duckdb.vector_assign_string_element(vector, i, v);
      }
      if (nulls) setValidity(vector, n, (i) => values[from + i] !== null);
      return;
    }
    case 'dictionary':
      fillDictionary(vector, column.ids, column.values, inline, from, n);
      return;
  }
}

/**
 * Rows [from, from + n) of whole numbers times `scale` into int64Scratch as int64 values (NaN as 0).
 * Only the loop: V8 compiles a hot loop on its own (on-stack replacement) and enters that code again
 * on later calls, and a call or property read after the loop that the loop's code had never seen sent
 * it back to the interpreter every time, with the rest of the chunk (seen: ~140 deopts of the writer's
 * fillVector per million trades). So callers copy and mark NULLs themselves.
 */
function toInt64Scratch(values: Float64Array, scale: number, from: number, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = values[from + i] * scale;
    if (Number.isSafeInteger(v)) {
      // The two halves of the 64-bit two's complement, little-endian: no BigInt per value.
      const high = Math.floor(v / 4294967296);
      int64Low[2 * i] = v - high * 4294967296;
      int64High[2 * i + 1] = high;
    } else {
      // Beyond 2^53 (a timestamp after the year 2255) or NaN (NULL): exact, slower.
      int64View.setBigInt64(8 * i, Number.isNaN(v) ? 0n : BigInt(values[from + i]) * BigInt(scale), true);
    }
  }
}

/** Rows [from, from + n) as int32 values into int64Scratch (see toInt64Scratch). */
function toInt32Scratch(values: Float64Array, from: number, n: number): void {
  for (let i = 0; i < n; i++) int32Values[i] = values[from + i];
}

/**
 * DuckDB's string_t as its C API lays it out (duckdb_string_t, which the bindings read back the same
 * way): 16 bytes, a uint32 length, then up to 12 bytes of the string inlined and zero-padded. Longer
 * strings live in a heap and go through vector_assign_string_element.
 */
const STRING_T_BYTES = 16;
const INLINE_BYTES = 12;
const stringScratch = new ArrayBuffer(CHUNK_ROWS * STRING_T_BYTES);
const stringWords = new Uint32Array(stringScratch);

/** The string_t of each value as four 32-bit words, or null when one is longer than DuckDB inlines. */
function inlineForms(values: readonly string[]): Uint32Array | null {
  const forms = new Uint32Array(values.length * 4);
  const bytes = new Uint8Array(forms.buffer);
  for (let id = 0; id < values.length; id++) {
    const utf8 = Buffer.from(values[id], 'utf8');
    if (utf8.length > INLINE_BYTES) return null;
    forms[id * 4] = utf8.length;
    bytes.set(utf8, id * STRING_T_BYTES + 4);
  }
  return forms;
}

/**
 * Rows [from, from + n) of a dictionary column. When every value fits inline (assets, trend
 * directions), the rows' string_t values are written with one copy: a call per row
 * (vector_assign_string_element, ~190 ns) cost the DuckDB thread ~0.05 s per million replayed trades.
 */
function fillDictionary(vector: Vector, ids: Uint32Array, values: readonly string[], forms: Uint32Array | null, from: number, n: number): void {
  let nulls = false;
  if (forms !== null) {
    for (let i = 0; i < n; i++) {
      const id = ids[from + i];
      const w = i * 4;
      if (id === NO_STRING) {
        nulls = true;
        stringWords.fill(0, w, w + 4);
        continue;
      }
      const f = id * 4;
      stringWords[w] = forms[f];
      stringWords[w + 1] = forms[f + 1];
      stringWords[w + 2] = forms[f + 2];
      stringWords[w + 3] = forms[f + 3];
    }
    duckdb.copy_data_to_vector(vector, 0, stringScratch, 0, n * STRING_T_BYTES);
  } else {
    for (let i = 0; i < n; i++) {
      const id = ids[from + i];
      if (id === NO_STRING) nulls = true;
      else duckdb.vector_assign_string_element(vector, i, values[id]);
    }
  }
  if (nulls) setValidity(vector, n, (i) => ids[from + i] !== NO_STRING);
}

/**
 * The given rows of every column, in that order. They mostly come in runs of consecutive rows (at
 * replay speed a keyed batch is all fresh rows but a few already stored), so each run is copied at
 * once: an element at a time through a callback cost the DuckDB thread ~70 ms per million
 * replayed trades, most of it before the code was optimised (it runs a few times per batch).
 */
export function pickRows(columns: readonly Column[], rows: readonly number[]): Column[] {
  const runs = runsOf(rows);
  const pick = <T extends Float64Array | Uint32Array | Uint8Array>(values: T): T => {
    const picked = new (values.constructor as new (n: number) => T)(rows.length);
    for (let r = 0, at = 0; r < runs.length; r += 2) {
      picked.set(values.subarray(runs[r], runs[r + 1]), at);
      at += runs[r + 1] - runs[r];
    }
    return picked;
  };
  return columns.map((column): Column => {
    if (column.kind === 'dictionary') return { ...column, ids: pick(column.ids) };
    const values = column.values;
    if (values === null) return column;
    if (!isTyped(values)) return { ...column, values: rows.map((i) => values[i]) } as Column;
    return { ...column, values: pick(values) } as Column;
  });
}

/** Runs [from, to) of consecutive rows, as pairs (from, to); a loop alone (see toInt64Scratch). */
function runsOf(rows: readonly number[]): number[] {
  const runs: number[] = [];
  for (let i = 0; i < rows.length; ) {
    let j = i + 1;
    while (j < rows.length && rows[j] === rows[j - 1] + 1) j++;
    runs.push(rows[i], rows[j - 1] + 1);
    i = j;
  }
  return runs;
}

/** Copies rows [from, from + n) of a typed array into a vector. */
function copyFixed(vector: Vector, values: Float64Array | Uint32Array | Uint8Array, from: number, n: number): void {
  const width = values.BYTES_PER_ELEMENT;
  if (values.buffer instanceof ArrayBuffer) {
    duckdb.copy_data_to_vector(vector, 0, values.buffer, values.byteOffset + from * width, n * width);
    return;
  }
  // The binding takes ArrayBuffers only: shared memory goes through one small reused buffer.
  new Uint8Array(copyScratch, 0, n * width).set(new Uint8Array(values.buffer, values.byteOffset + from * width, n * width));
  duckdb.copy_data_to_vector(vector, 0, copyScratch, 0, n * width);
}

/**
 * Rows [from, from + n) that are NaN become NULL. Most chunks hold no NaN: a reset chunk's rows are all
 * valid, so those leave the validity mask alone (a call per row to build it cost the DuckDB thread
 * ~0.1 s per million trades, mostly for received_at).
 */
function setNaNAsNull(vector: Vector, values: Float64Array, from: number, n: number): void {
  // includes() finds NaN (SameValueZero) in native code: a JavaScript loop here ran interpreted in
  // the first batches of every run (seen at ~60 ms of the first write of 11k window rows in a whole
  // run, with both cores busy; 40-49 -> 30-40 ms for that first write alone in a fresh process).
  if (!values.subarray(from, from + n).includes(NaN)) return;
  setValidity(vector, n, (i) => !Number.isNaN(values[from + i]));
}

/** Every row of the chunk NULL (a column the batch has no values for). */
function setAllNull(vector: Vector, n: number): void {
  const words = Math.ceil(n / 64);
  validityBytes.fill(0, 0, words * 8);
  copyValidity(vector, words);
}

/** Writes the validity bits of rows [0, n): row i is NULL where `valid(i)` is false. */
function setValidity(vector: Vector, n: number, valid: (i: number) => boolean): void {
  const words = Math.ceil(n / 64);
  validityBytes.fill(0, 0, words * 8);
  for (let i = 0; i < n; i++) if (valid(i)) validityBytes[i >> 3] |= 1 << (i & 7);
  copyValidity(vector, words);
}

function copyValidity(vector: Vector, words: number): void {
  duckdb.vector_ensure_validity_writable(vector);
  duckdb.copy_data_to_vector_validity(vector, 0, validityScratch, 0, words * 8);
}
