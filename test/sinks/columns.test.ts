import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { appendColumns, pickRows, type Column } from '../../src/sinks/duckdb/columns.js';
import { NO_STRING } from '../../src/sinks/duckdb/store-batch.js';
import { withDuckDB } from '../../src/sinks/duckdb/open.js';

const dir = mkdtempSync(join(tmpdir(), 'coinstream-columns-'));

describe('appendColumns', () => {
  it('stores every kind exactly, NULLs included, across several chunks and from shared memory', async () => {
    const n = 5000; // three data chunks of at most 2048 rows
    const shared = new Float64Array(new SharedArrayBuffer(n * 8));
    const ms = new Float64Array(n);
    const specials = [0, -1, 1561939203172, 8_639_999_999_999_999, -62_135_596_800_000];
    for (let i = 0; i < n; i++) {
      shared[i] = i % 7 === 0 ? NaN : i * 0.1;
      ms[i] = specials[i % specials.length] + (i % specials.length === 3 ? 0 : i);
    }
    const text = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? null : `s${i}`));
    const rows = await withDuckDB(join(dir, 'kinds.duckdb'), async (conn) => {
      await conn.run('CREATE TABLE t (i UINTEGER, d DOUBLE, ts TIMESTAMP, b BIGINT, g INTEGER, f BOOLEAN, s VARCHAR, z VARCHAR)');
      await appendColumns(
        conn,
        't',
        [
          { kind: 'uinteger', values: Uint32Array.from({ length: n }, (_, i) => i) },
          { kind: 'double', values: shared, nanIsNull: true },
          { kind: 'timestamp', values: ms },
          { kind: 'bigint', values: Float64Array.from({ length: n }, (_, i) => (i % 2 ? -i : i * 2 ** 40)) },
          { kind: 'integer', values: Float64Array.from({ length: n }, (_, i) => 1 - i) },
          { kind: 'boolean', values: Uint8Array.from({ length: n }, (_, i) => i % 2) },
          { kind: 'varchar', values: text },
          { kind: 'varchar', values: null },
        ],
        n,
      );
      return (await conn.runAndReadAll('SELECT i, d, epoch_ms(ts)::DOUBLE AS ms, b::DOUBLE AS b, g, f, s, z FROM t ORDER BY i')).getRowObjectsJS();
    });
    expect(rows).toHaveLength(n);
    rows.forEach((row, i) => {
      expect(row).toEqual({
        i,
        d: i % 7 === 0 ? null : i * 0.1,
        ms: ms[i],
        b: i % 2 ? -i : i * 2 ** 40,
        g: 1 - i,
        f: i % 2 === 1,
        s: text[i],
        z: null,
      });
    });
  });
  it('clears the NULLs of one chunk before the next (the chunk is reused, and a chunk without NaN skips the mask)', async () => {
    const n = 2048 * 3;
    // NaN only in the first chunk: the second and third must come out with no NULL at all.
    const d = Float64Array.from({ length: n }, (_, i) => (i < 2048 && i % 5 === 0 ? NaN : i + 0.5));
    const ts = Float64Array.from({ length: n }, (_, i) => (i < 2048 && i % 3 === 0 ? NaN : 1561939203172 + i));
    // All NULL in the first write, strings in the second: same layout, so the same cached chunk.
    const rows = await withDuckDB(join(dir, 'reuse.duckdb'), async (conn) => {
      await conn.run('CREATE TABLE t (i UINTEGER, d DOUBLE, ts TIMESTAMP, s VARCHAR)');
      const ids = Uint32Array.from({ length: n }, (_, i) => i);
      await appendColumns(conn, 't', [{ kind: 'uinteger', values: ids }, { kind: 'double', values: d, nanIsNull: true }, { kind: 'timestamp', values: ts, nanIsNull: true }, { kind: 'varchar', values: null }], n);
      const text = Array.from({ length: n }, (_, i) => `s${i}`);
      const later = Uint32Array.from({ length: n }, (_, i) => n + i);
      await appendColumns(conn, 't', [{ kind: 'uinteger', values: later }, { kind: 'double', values: d.map((x, i) => i + 0.25) }, { kind: 'timestamp', values: ts.map((_, i) => 1561939203172 + i), nanIsNull: true }, { kind: 'varchar', values: text }], n);
      return (await conn.runAndReadAll('SELECT i, d, epoch_ms(ts)::DOUBLE AS ms, s FROM t ORDER BY i')).getRowObjectsJS();
    });
    expect(rows).toHaveLength(2 * n);
    let mismatches = 0;
    rows.forEach((row, i) => {
      const j = i % n;
      const expected =
        i < n
          ? { i, d: Number.isNaN(d[j]) ? null : d[j], ms: Number.isNaN(ts[j]) ? null : ts[j], s: null }
          : { i, d: j + 0.25, ms: 1561939203172 + j, s: `s${j}` };
      if (JSON.stringify(row) !== JSON.stringify(expected)) mismatches++;
    });
    expect(mismatches).toBe(0);
    expect(rows.filter((r) => r.d === null).length).toBe(Math.ceil(2048 / 5));
    expect(rows.filter((r) => r.ms === null).length).toBe(Math.ceil(2048 / 3));
  });

  it('finds a lone NaN at either edge of a chunk and stores it as NULL, the rows around it as they are', async () => {
    // Rows 0, 2047 (last of the first chunk), 2048 (first of the second) and the very last row.
    const n = 2048 * 2 + 100;
    const lone = new Set([0, 2047, 2048, n - 1]);
    const d = Float64Array.from({ length: n }, (_, i) => (lone.has(i) ? NaN : i + 0.5));
    const rows = await withDuckDB(join(dir, 'edges.duckdb'), async (conn) => {
      await conn.run('CREATE TABLE t (i UINTEGER, d DOUBLE, ts TIMESTAMP)');
      await appendColumns(conn, 't', [{ kind: 'uinteger', values: Uint32Array.from({ length: n }, (_, i) => i) }, { kind: 'double', values: d, nanIsNull: true }, { kind: 'timestamp', values: d.map((x) => (Number.isNaN(x) ? NaN : 1561939203172 + x - 0.5)), nanIsNull: true }], n);
      return (await conn.runAndReadAll('SELECT i, d, epoch_ms(ts)::DOUBLE AS ms FROM t ORDER BY i')).getRowObjectsJS();
    });
    expect(rows.filter((r) => r.d === null).map((r) => r.i)).toEqual([...lone]);
    expect(rows.filter((r) => r.ms === null).map((r) => r.i)).toEqual([...lone]);
    expect(rows.filter((r, i) => r.d !== null && r.d !== i + 0.5)).toEqual([]);
  });
  it('stores dictionary columns exactly: values around the 12 bytes DuckDB inlines, in UTF-8, NULLs, across chunks', async () => {
    // Every value fits inline (one copy per chunk), and one that does not (a call per row).
    const short = ['', 'a', 'up', 'bitcoin', 'abcdefghijk', 'abcdefghijkl', 'é'.repeat(6), '€'.repeat(4), 'a\u0000b'];
    const long = [...short, 'abcdefghijklm', 'é'.repeat(7)];
    const n = 2048 * 2 + 100;
    const idsOf = (values: string[]) => Uint32Array.from({ length: n }, (_, i) => (i % 13 === 0 ? NO_STRING : (i * 7) % values.length));
    const shortIds = idsOf(short);
    const longIds = idsOf(long);
    const rows = await withDuckDB(join(dir, 'dictionary.duckdb'), async (conn) => {
      await conn.run('CREATE TABLE t (i UINTEGER, s VARCHAR, l VARCHAR)');
      await appendColumns(
        conn,
        't',
        [
          { kind: 'uinteger', values: Uint32Array.from({ length: n }, (_, i) => i) },
          { kind: 'dictionary', ids: shortIds, values: short },
          { kind: 'dictionary', ids: longIds, values: long },
        ],
        n,
      );
      return (await conn.runAndReadAll("SELECT i, s, l, s = 'bitcoin' AS eq FROM t ORDER BY i")).getRowObjectsJS();
    });
    const text = (ids: Uint32Array, values: string[]) => Array.from(ids, (id) => (id === NO_STRING ? null : values[id]));
    expect(rows.map((r) => r.s)).toEqual(text(shortIds, short));
    expect(rows.map((r) => r.l)).toEqual(text(longIds, long));
    // Compared with a literal, an inlined value is the same string (its padding is zero).
    expect(rows.filter((r) => r.eq === true).length).toBe(text(shortIds, short).filter((t) => t === 'bitcoin').length);
  });
});

describe('pickRows', () => {
  it('takes the given rows of every column, in the given order, and keeps all-NULL columns', () => {
    const columns: Column[] = [
      { kind: 'double', values: Float64Array.of(0.5, NaN, 2.5, 3.5), nanIsNull: true },
      { kind: 'uinteger', values: Uint32Array.of(10, 11, 12, 13) },
      { kind: 'boolean', values: Uint8Array.of(1, 0, 1, 0) },
      { kind: 'varchar', values: ['a', null, 'c', 'd'] },
      { kind: 'varchar', values: null },
      { kind: 'dictionary', ids: Uint32Array.of(0, NO_STRING, 1, 1), values: ['x', 'y'] },
    ];
    const picked = pickRows(columns, [3, 1]);
    expect(picked.map((c) => c.kind)).toEqual(['double', 'uinteger', 'boolean', 'varchar', 'varchar', 'dictionary']);
    expect(picked[5]).toEqual({ kind: 'dictionary', ids: Uint32Array.of(1, NO_STRING), values: ['x', 'y'] });
    expect(picked[0]).toEqual({ kind: 'double', values: Float64Array.of(3.5, NaN), nanIsNull: true });
    expect(picked[1].values).toEqual(Uint32Array.of(13, 11));
    expect(picked[2].values).toEqual(Uint8Array.of(0, 0));
    expect(picked[3].values).toEqual(['d', null]);
    expect(picked[4].values).toBeNull();
    expect(columns[1].values).toEqual(Uint32Array.of(10, 11, 12, 13));
  });

  it('copies runs of consecutive rows, out of order too, as single rows would be', () => {
    const n = 50;
    const columns: Column[] = [
      { kind: 'double', values: Float64Array.from({ length: n }, (_, i) => i + 0.5) },
      { kind: 'dictionary', ids: Uint32Array.from({ length: n }, (_, i) => i % 3), values: ['a', 'b', 'c'] },
      { kind: 'varchar', values: Array.from({ length: n }, (_, i) => `s${i}`) },
    ];
    const rows = [0, 1, 2, 7, 8, 20, 3, 4, 49, 30, 31, 32, 33];
    const picked = pickRows(columns, rows);
    expect(Array.from(picked[0].values as Float64Array)).toEqual(rows.map((i) => i + 0.5));
    expect(Array.from((picked[1] as { ids: Uint32Array }).ids)).toEqual(rows.map((i) => i % 3));
    expect(picked[2].values).toEqual(rows.map((i) => `s${i}`));
  });
});
