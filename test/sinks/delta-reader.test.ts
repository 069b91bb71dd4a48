// The Delta reader against real tables written by Spark and delta-rs (test/fixtures/delta, facts from
// their provenance notes), plus small synthetic logs for the error cases.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CoinstreamError } from '../../src/core/errors.js';
import { withDuckDB } from '../../src/sinks/duckdb/open.js';
import { decodeDeltaPath, readDeltaLog, readDeltaTable } from '../../src/sinks/delta/reader.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/delta/', import.meta.url));
const table = (name: string): string => join(FIXTURES, name);

function compare(a: unknown, b: unknown): number {
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  return Number(a) - Number(b);
}

/** The values of one column, sorted. */
function sorted(rows: Record<string, unknown>[], column: string): unknown[] {
  return rows.map((r) => r[column]).sort(compare);
}

const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

async function configError(promise: Promise<unknown>): Promise<CoinstreamError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CoinstreamError);
  expect((err as CoinstreamError).code).toBe('CONFIG');
  expect((err as CoinstreamError).message.split('\n')).toHaveLength(1);
  return err as CoinstreamError;
}

describe('Delta reader on real tables', () => {
  it('delta-rs/simple_table: WRITE, MERGE, WRITE, UPDATE, DELETE -> 5 files, ids 5, 7, 9 at v4', async () => {
    const dir = table('delta-rs/simple_table');
    const snap = await readDeltaLog(dir);
    expect(snap.version).toBe(4); // _delta_log/.tmp/00000000000000000005.json is not part of the log
    expect(snap.checkpointVersion).toBeNull();
    expect(snap.protocol).toEqual({ minReaderVersion: 1, minWriterVersion: 2 });
    expect(snap.metaData.id).toBe('5fba94ed-9794-4965-ba6e-6ee3c0d22af9');
    expect(snap.metaData.schema.fields.map((f) => [f.name, f.type])).toEqual([['id', 'long']]);
    expect(snap.metaData.partitionColumns).toEqual([]);
    expect(snap.metaData.configuration).toEqual({});
    expect(snap.metaData.createdTime).toBe(1587968585495);
    expect(snap.files).toHaveLength(5);
    expect(snap.txns.size).toBe(0);
    // Tombstones are never active, and the last DELETE's removes are among them.
    const active = new Set(snap.files.map((f) => f.path));
    expect(snap.tombstones.some((t) => active.has(t.path))).toBe(false);
    expect(snap.tombstones.map((t) => t.path)).toContain('part-00000-f17fcbf5-e0dc-40ba-adae-ce66d1fcaef6-c000.snappy.parquet');
    const added = snap.files.find((f) => f.path === 'part-00000-2befed33-c358-4768-a43c-3eda0d2a499d-c000.snappy.parquet');
    expect(added).toEqual({ path: 'part-00000-2befed33-c358-4768-a43c-3eda0d2a499d-c000.snappy.parquet', partitionValues: {}, size: 262, modificationTime: 1587968626000, dataChange: true });

    const rows = await readDeltaTable(dir);
    expect(rows).toHaveLength(3);
    expect(sorted(rows, 'id')).toEqual([5n, 7n, 9n]);
  });

  it('delta-rs/simple_table: time travel to v0, v1, v2 and v3', async () => {
    const dir = table('delta-rs/simple_table');
    const v0 = await readDeltaLog(dir, { version: 0 });
    expect(v0.version).toBe(0);
    expect(v0.files).toHaveLength(6);
    expect(v0.tombstones).toHaveLength(0);
    expect(sorted(await readDeltaTable(dir, { version: 0 }), 'id')).toEqual([0n, 1n, 2n, 3n, 4n]);
    // MERGE: 5 removes, 17 adds -> 22 files, ids 0..19
    expect((await readDeltaLog(dir, { version: 1 })).files).toHaveLength(22);
    expect(sorted(await readDeltaTable(dir, { version: 1 }), 'id')).toEqual(range(20).map(BigInt));
    // Overwrite
    expect(sorted(await readDeltaTable(dir, { version: 2 }), 'id')).toEqual([5n, 6n, 7n, 8n, 9n]);
    // UPDATE: even ids + 100
    expect(sorted(await readDeltaTable(dir, { version: 3 }), 'id')).toEqual([5n, 7n, 9n, 106n, 108n]);
  });

  it('delta-rs/delta-0.8.0: a DELETE at v1 leaves 2 files, values 0, 1, 2, 4, with stats', async () => {
    const dir = table('delta-rs/delta-0.8.0');
    const snap = await readDeltaLog(dir);
    expect(snap.version).toBe(1);
    expect(snap.files).toHaveLength(2);
    expect(snap.tombstones.map((t) => t.path)).toEqual(['part-00001-911a94a2-43f6-4acb-8620-5e68c2654989-c000.snappy.parquet']);
    expect(snap.tombstones[0]).toMatchObject({ deletionTimestamp: 1615043776198, dataChange: true, size: 445, partitionValues: {} });
    expect(snap.files.map((f) => f.stats)).toEqual([
      { numRecords: 2, nullCount: { value: 0 }, minValues: { value: 0 }, maxValues: { value: 2 } },
      { numRecords: 2, nullCount: { value: 0 }, minValues: { value: 2 }, maxValues: { value: 4 } },
    ]);
    const rows = await readDeltaTable(dir);
    expect(rows).toHaveLength(4);
    expect(sorted(rows, 'value')).toEqual([0, 1, 2, 4]);
    expect(sorted(await readDeltaTable(dir, { version: 0 }), 'value')).toEqual([0, 1, 2, 3, 4]);
  });

  it('delta-rs/delta-0.8.0-partitioned: 6 files, 7 rows, year/month/day from partitionValues', async () => {
    const dir = table('delta-rs/delta-0.8.0-partitioned');
    const snap = await readDeltaLog(dir);
    expect(snap.version).toBe(0);
    expect(snap.metaData.partitionColumns).toEqual(['year', 'month', 'day']);
    expect(snap.files).toHaveLength(6);
    expect(snap.files[0].partitionValues).toEqual({ year: '2020', month: '1', day: '1' });
    const rows = await readDeltaTable(dir);
    expect(rows).toHaveLength(7);
    expect(sorted(rows, 'value')).toEqual(['1', '2', '3', '4', '5', '6', '7']);
    expect([...rows].sort((a, b) => compare(a.value, b.value))).toEqual([
      { value: '1', year: '2020', month: '1', day: '1' },
      { value: '2', year: '2020', month: '2', day: '3' },
      { value: '3', year: '2020', month: '2', day: '5' },
      { value: '4', year: '2021', month: '4', day: '5' },
      { value: '5', year: '2021', month: '12', day: '4' },
      { value: '6', year: '2021', month: '12', day: '20' },
      { value: '7', year: '2021', month: '12', day: '20' },
    ]);
    // A projection, in the order asked for
    const projected = await readDeltaTable(dir, { columns: ['day', 'value'] });
    expect(Object.keys(projected[0])).toEqual(['day', 'value']);
    expect(sorted(projected, 'day')).toEqual(['1', '20', '20', '3', '4', '5', '5']);
    const err = await configError(readDeltaTable(dir, { columns: ['nope'] }));
    expect(err.message).toMatch(/no column nope/);
  });

  it('delta-rs/delta-0.2.0: checkpoint at v3, txn appId e4a20b59-... version 0, 3 files, 6 rows', async () => {
    const dir = table('delta-rs/delta-0.2.0');
    const snap = await readDeltaLog(dir);
    expect(snap.version).toBe(3);
    expect(snap.checkpointVersion).toBe(3);
    expect(snap.metaData.id).toBe('22ef18ba-191c-4c36-a606-3dad5cdf3830');
    expect(snap.metaData.schema.fields.map((f) => [f.name, f.type])).toEqual([['value', 'integer']]);
    expect(snap.txns).toEqual(new Map([['e4a20b59-dd0e-4c50-b074-e8ae4786df30', 0]]));
    expect(snap.files).toHaveLength(3);
    expect(snap.files.map((f) => f.path).sort()).toEqual([
      'part-00000-7c2deba3-1994-4fb8-bc07-d46c948aa415-c000.snappy.parquet',
      'part-00000-cb6b150b-30b8-4662-ad28-ff32ddab96d2-c000.snappy.parquet',
      'part-00001-c373a5bd-85f0-4758-815e-7eb62007a15c-c000.snappy.parquet',
    ]);
    expect(snap.tombstones).toHaveLength(4);
    const rows = await readDeltaTable(dir);
    expect(rows).toHaveLength(6);
    expect(sorted(rows, 'value')).toEqual([1, 1, 2, 2, 3, 3]);

    // Before the checkpoint: replayed from v0; before the streaming commit there is no txn.
    const v2 = await readDeltaLog(dir, { version: 2 });
    expect(v2.checkpointVersion).toBeNull();
    expect(v2.txns.size).toBe(0);
    expect(v2.files).toHaveLength(2);
    expect(sorted(await readDeltaTable(dir, { version: 2 }), 'value')).toEqual([1, 2, 3]);
    expect(sorted(await readDeltaTable(dir, { version: 1 }), 'value')).toEqual([1, 1, 2, 2, 3, 3]);
  });

  it('delta-rs/simple_table_with_checkpoint: checkpoint at v10, 11 files, 11 rows', async () => {
    const dir = table('delta-rs/simple_table_with_checkpoint');
    const snap = await readDeltaLog(dir);
    expect(snap.version).toBe(10);
    expect(snap.checkpointVersion).toBe(10);
    expect(snap.files).toHaveLength(11);
    const rows = await readDeltaTable(dir);
    expect(rows).toHaveLength(11);
    expect(sorted(rows, 'version')).toEqual([0, ...range(10)]);
    const v9 = await readDeltaLog(dir, { version: 9 });
    expect(v9.checkpointVersion).toBeNull();
    expect(v9.files).toHaveLength(10);
    expect(sorted(await readDeltaTable(dir, { snapshot: v9 }), 'version')).toEqual(range(10));
  });

  it('delta-golden/checkpoint: checkpoint at v10 with tombstones, then 4 commits -> one active add', async () => {
    const dir = table('delta-golden/checkpoint');
    const snap = await readDeltaLog(dir);
    expect(snap.version).toBe(14);
    expect(snap.checkpointVersion).toBe(10);
    expect(snap.metaData.id).toBe('testId');
    expect(snap.metaData.createdTime).toBeNull();
    expect(snap.files).toEqual([{ path: '15', partitionValues: {}, size: 1, modificationTime: 1, dataChange: true }]);
    // 1..10 are the checkpoint's tombstones, 11..14 removed after it.
    expect(snap.tombstones.map((t) => Number(t.path)).sort((a, b) => a - b)).toEqual(range(14, 1));
    expect(snap.tombstones.find((t) => t.path === '1')).toEqual({ path: '1', deletionTimestamp: 1697495759382, dataChange: false });
    expect(snap.tombstones.find((t) => t.path === '14')).toEqual({ path: '14', deletionTimestamp: 1697495786456, dataChange: true });

    const v10 = await readDeltaLog(dir, { version: 10 });
    expect(v10.checkpointVersion).toBe(10);
    expect(v10.files.map((f) => f.path)).toEqual(['11']);
    expect(v10.tombstones).toHaveLength(10);
    const v9 = await readDeltaLog(dir, { version: 9 });
    expect(v9.checkpointVersion).toBeNull();
    expect(v9.files.map((f) => f.path)).toEqual(['10']);
    expect(v9.tombstones).toHaveLength(9);

    // It is a log only: there are no data files to read.
    const err = await configError(readDeltaTable(dir));
    expect(err.message).toMatch(/cannot read data files at version 14/);
  });

  it('delta-golden/data-reader-partition-values: 12 typed partition columns, one all-null partition, URL-encoded paths', async () => {
    const dir = table('delta-golden/data-reader-partition-values');
    const snap = await readDeltaLog(dir);
    expect(snap.version).toBe(0);
    expect(snap.files).toHaveLength(3);
    expect(snap.metaData.partitionColumns).toHaveLength(12);
    // as_timestamp=2021-09-08%2011%253A11%253A11 in the log is the directory "as_timestamp=2021-09-08 11%3A11%3A11"
    expect(snap.files[0].path).toContain('/as_timestamp=2021-09-08 11%3A11%3A11/');
    expect(snap.files[1].partitionValues.as_int).toBeNull();

    const rows = (await readDeltaTable(dir)).sort((a, b) => compare(a.value, b.value));
    expect(rows).toHaveLength(3);
    const partitions = (r: Record<string, unknown>) => Object.fromEntries(snap.metaData.partitionColumns.map((c) => [c, r[c]]));
    expect(partitions(rows[0])).toEqual({
      as_int: 0,
      as_long: 0n,
      as_byte: 0,
      as_short: 0,
      as_boolean: true,
      as_float: 0,
      as_double: 0,
      as_string: '0',
      as_string_lit_null: 'null', // the string "null", not a null
      as_date: new Date('2021-09-08T00:00:00Z'),
      as_timestamp: new Date('2021-09-08T11:11:11Z'),
      as_big_decimal: 0,
    });
    expect(partitions(rows[1])).toEqual({
      as_int: 1,
      as_long: 1n,
      as_byte: 1,
      as_short: 1,
      as_boolean: false,
      as_float: 1,
      as_double: 1,
      as_string: '1',
      as_string_lit_null: 'null',
      as_date: new Date('2021-09-08T00:00:00Z'),
      as_timestamp: new Date('2021-09-08T11:11:11Z'),
      as_big_decimal: 1,
    });
    expect(partitions(rows[2])).toEqual(Object.fromEntries(snap.metaData.partitionColumns.map((c) => [c, null])));
    // Data columns, nested types included, come from the Parquet files.
    expect(rows.map((r) => r.value)).toEqual(['0', '1', '2']);
    expect(rows[1].as_nested_struct).toEqual({ aa: '1', ab: '1', ac: { aca: 1, acb: 1n } });
    expect(rows[2].as_list_of_records).toEqual([{ val: 2 }, { val: 2 }, { val: 2 }]);
    expect(Object.keys(rows[0])).toEqual(snap.metaData.schema.fields.map((f) => f.name));
  });

  it('delta-golden/snapshot-data3: append, append, overwrite, append -> 4 files, 30 rows; older versions', async () => {
    const dir = table('delta-golden/snapshot-data3');
    const snap = await readDeltaLog(dir);
    expect(snap.version).toBe(3);
    expect(snap.files).toHaveLength(4);
    expect(snap.tombstones).toHaveLength(4);
    const rows = await readDeltaTable(dir);
    expect(rows).toHaveLength(30);
    const expected = (batch: number, n: number) => range(n).map((i) => ({ col1: i, col2: `data-${batch}-${i}` }));
    const byCol2 = (rs: Record<string, unknown>[]) => [...rs].sort((a, b) => compare(a.col2, b.col2));
    expect(byCol2(rows)).toEqual(byCol2([...expected(2, 10), ...expected(3, 20)]));
    // Before the overwrite: two appends of 10 rows each.
    const v1 = await readDeltaTable(dir, { version: 1 });
    expect(v1).toHaveLength(20);
    expect(byCol2(v1)).toEqual(byCol2([...expected(0, 10), ...expected(1, 10)]));
    expect(byCol2(await readDeltaTable(dir, { version: 2 }))).toEqual(byCol2(expected(2, 10)));
    expect(byCol2(await readDeltaTable(dir, { version: 0 }))).toEqual(byCol2(expected(0, 10)));
  });
});

// --- synthetic logs ---------------------------------------------------------------------------

const tmp = mkdtempSync(join(tmpdir(), 'coinstream-delta-'));
let tables = 0;

const PROTOCOL = { protocol: { minReaderVersion: 1, minWriterVersion: 2 } };
function metaData(schema: { name: string; type: string }[], partitionColumns: string[] = [], configuration: Record<string, string> = {}) {
  const fields = schema.map((f) => ({ ...f, nullable: true, metadata: {} }));
  return { metaData: { id: 'synthetic', format: { provider: 'parquet', options: {} }, schemaString: JSON.stringify({ type: 'struct', fields }), partitionColumns, configuration, createdTime: 1 } };
}
const add = (path: string, partitionValues: Record<string, string | null> = {}) => ({ add: { path, partitionValues, size: 1, modificationTime: 1, dataChange: true } });

/** A table whose commits are given by version (gaps allowed). */
function makeTable(commits: Record<number, object[]>): string {
  const dir = join(tmp, `t${tables++}`);
  mkdirSync(join(dir, '_delta_log'), { recursive: true });
  for (const [v, actions] of Object.entries(commits)) {
    writeFileSync(join(dir, '_delta_log', `${v.padStart(20, '0')}.json`), actions.map((a) => JSON.stringify(a)).join('\n') + '\n');
  }
  return dir;
}

describe('Delta reader errors and edge cases', () => {
  it('refuses a log with a missing commit, naming it', async () => {
    const dir = makeTable({ 0: [PROTOCOL, metaData([{ name: 'a', type: 'long' }])], 1: [add('x.parquet')], 3: [add('y.parquet')] });
    const err = await configError(readDeltaLog(dir));
    expect(err.message).toContain(dir);
    expect(err.message).toMatch(/commit _delta_log\/00000000000000000002\.json is missing/);
    // Versions before the gap are still readable.
    expect((await readDeltaLog(dir, { version: 1 })).files.map((f) => f.path)).toEqual(['x.parquet']);
    // A log that starts after 0 without a checkpoint cannot be rebuilt either.
    const late = makeTable({ 1: [PROTOCOL, metaData([{ name: 'a', type: 'long' }])] });
    expect((await configError(readDeltaLog(late))).message).toMatch(/00000000000000000000\.json is missing/);
  });

  it('refuses a table that needs a newer reader, or reader features it lacks, or column mapping', async () => {
    const v4 = makeTable({ 0: [{ protocol: { minReaderVersion: 4, minWriterVersion: 7 } }, metaData([{ name: 'a', type: 'long' }])] });
    expect((await configError(readDeltaLog(v4))).message).toMatch(/needs Delta reader version 4; coinstream reads reader versions 1 to 3/);
    const features = makeTable({ 0: [{ protocol: { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['timestampNtz', 'v2Checkpoint'], writerFeatures: [] } }, metaData([{ name: 'a', type: 'long' }])] });
    expect((await configError(readDeltaLog(features))).message).toMatch(/reader features coinstream does not support: v2Checkpoint$/);
    const mapping = makeTable({ 0: [{ protocol: { minReaderVersion: 2, minWriterVersion: 5 } }, metaData([{ name: 'a', type: 'long' }], [], { 'delta.columnMapping.mode': 'name' })] });
    expect((await configError(readDeltaLog(mapping))).message).toMatch(/column mapping \(delta.columnMapping.mode=name\)/);
    // A later protocol upgrade is what counts.
    const upgraded = makeTable({ 0: [PROTOCOL, metaData([{ name: 'a', type: 'long' }])], 1: [{ protocol: { minReaderVersion: 5, minWriterVersion: 7 } }] });
    expect((await readDeltaLog(upgraded, { version: 0 })).version).toBe(0);
    expect((await configError(readDeltaLog(upgraded))).message).toMatch(/reader version 5/);
  });

  it('says so for a directory that is not a Delta table, a version that does not exist, or a bad commit line', async () => {
    expect((await configError(readDeltaLog(join(tmp, 'absent')))).message).toMatch(/not a Delta table \(no _delta_log directory\)/);
    const dir = makeTable({ 0: [PROTOCOL, metaData([{ name: 'a', type: 'long' }])] });
    expect((await configError(readDeltaLog(dir, { version: 7 }))).message).toMatch(/version 7 does not exist \(latest is 0\)/);
    const bad = makeTable({ 0: [PROTOCOL, metaData([{ name: 'a', type: 'long' }])] });
    writeFileSync(join(bad, '_delta_log', '00000000000000000001.json'), '{"add":\n');
    expect((await configError(readDeltaLog(bad))).message).toMatch(/00000000000000000001\.json line 1 is not JSON/);
  });

  it('reconciles re-adds, keeps the newest txn per appId, types partition values, fills columns missing from a file', async () => {
    const dir = makeTable({});
    mkdirSync(join(dir, 'day=2024-01-02'));
    await withDuckDB(':memory:', async (conn) => {
      await conn.run(`COPY (SELECT 1::BIGINT AS a) TO '${join(dir, 'day=2024-01-02', "it's a file.parquet").replaceAll("'", "''")}' (FORMAT parquet)`);
      await conn.run(`COPY (SELECT 2::BIGINT AS a, 'x' AS b) TO '${join(dir, 'b.parquet')}' (FORMAT parquet)`);
    });
    const schema = [
      { name: 'a', type: 'long' },
      { name: 'b', type: 'string' },
      { name: 'day', type: 'date' },
      { name: 'ts', type: 'timestamp' },
      { name: 'amount', type: 'decimal(10,2)' },
    ];
    const log = join(dir, '_delta_log');
    const write = (v: number, actions: object[]) => writeFileSync(join(log, `${String(v).padStart(20, '0')}.json`), actions.map((a) => JSON.stringify(a)).join('\n'));
    const first = add("day=2024-01-02/it's%20a%20file.parquet", { day: '2024-01-02', ts: '2024-01-02T03:04:05.123456Z', amount: '12.34' });
    write(0, [PROTOCOL, metaData(schema, ['day', 'ts', 'amount']), first, { txn: { appId: 'app', version: 1 } }]);
    write(1, [{ remove: { path: "day=2024-01-02/it's%20a%20file.parquet", dataChange: true } }, { txn: { appId: 'app', version: 2 } }]);
    write(2, [first, add('b.parquet', { day: '', ts: null, amount: '__HIVE_DEFAULT_PARTITION__' }), { txn: { appId: 'other', version: 9 } }]);

    expect((await readDeltaLog(dir, { version: 1 })).files).toHaveLength(0);
    expect(await readDeltaTable(dir, { version: 1 })).toEqual([]);
    const snap = await readDeltaLog(dir);
    expect(snap.files.map((f) => f.path)).toEqual(["day=2024-01-02/it's a file.parquet", 'b.parquet']);
    expect(snap.tombstones).toHaveLength(0); // re-added
    expect(snap.txns).toEqual(new Map([['app', 2], ['other', 9]]));
    expect(await readDeltaTable(dir)).toEqual([
      { a: 1n, b: null, day: new Date('2024-01-02T00:00:00Z'), ts: new Date('2024-01-02T03:04:05.123Z'), amount: 12.34 },
      { a: 2n, b: 'x', day: null, ts: null, amount: null },
    ]);
  });

  it('starts from a multi-part checkpoint, and ignores one with a missing part', async () => {
    const dir = makeTable({ 2: [{ remove: { path: 'a.parquet', dataChange: true } }, add('c.parquet')] });
    const log = join(dir, '_delta_log');
    const part = (i: number) => join(log, `00000000000000000001.checkpoint.000000000${i}.0000000002.parquet`);
    const schemaString = JSON.stringify({ type: 'struct', fields: [{ name: 'a', type: 'long', nullable: true, metadata: {} }] }).replaceAll("'", "''");
    const emptyMap = 'MAP {}::MAP(VARCHAR, VARCHAR)';
    await withDuckDB(':memory:', async (conn) => {
      await conn.run(
        `COPY (SELECT {'minReaderVersion': 1, 'minWriterVersion': 2} AS protocol, {'id': 'cp', 'format': {'provider': 'parquet', 'options': ${emptyMap}}, 'schemaString': '${schemaString}', 'partitionColumns': []::VARCHAR[], 'configuration': ${emptyMap}, 'createdTime': 5::BIGINT} AS metaData, {'appId': 'app', 'version': 41::BIGINT} AS txn) TO '${part(1)}' (FORMAT parquet)`,
      );
      await conn.run(
        `COPY (SELECT {'path': p, 'partitionValues': ${emptyMap}, 'size': 1::BIGINT, 'modificationTime': 1::BIGINT, 'dataChange': false, 'stats': '{"numRecords":3}'} AS add FROM (VALUES ('a.parquet'), ('b%20b.parquet')) t(p)) TO '${part(2)}' (FORMAT parquet)`,
      );
    });
    writeFileSync(join(log, '_last_checkpoint'), JSON.stringify({ version: 1, size: 4, parts: 2 }));
    const snap = await readDeltaLog(dir);
    expect(snap.version).toBe(2);
    expect(snap.checkpointVersion).toBe(1);
    expect(snap.metaData).toMatchObject({ id: 'cp', createdTime: 5, partitionColumns: [], configuration: {} });
    expect(snap.txns).toEqual(new Map([['app', 41]]));
    expect(snap.files.map((f) => f.path)).toEqual(['b b.parquet', 'c.parquet']);
    expect(snap.files[0].stats).toEqual({ numRecords: 3 });
    expect(snap.tombstones.map((t) => t.path)).toEqual(['a.parquet']);

    rmSync(part(2));
    expect((await configError(readDeltaLog(dir))).message).toMatch(/00000000000000000000\.json is missing/);
  });

  it('decodes add.path as a URI', () => {
    expect(decodeDeltaPath('a%20b/c%253A.parquet')).toBe('a b/c%3A.parquet');
    expect(decodeDeltaPath('file:///tmp/x%20y/z.parquet')).toBe('/tmp/x y/z.parquet');
    expect(decodeDeltaPath('s3://bucket/a%20b.parquet')).toBe('s3://bucket/a b.parquet');
  });
});
