// Partition values are strings in the log ("Partition Value Serialization" of the protocol). This turns
// one into a typed DuckDB SQL expression, so partition columns come out of DuckDB with the same JS types
// as data columns (long -> bigint, date/timestamp -> Date, decimal -> number, ...).

import { decimalOf, quoteString, sqlType, type DeltaType } from './schema.js';

/** Spark's spelling of a null partition value in directory names; some writers put it in the log too. */
export const HIVE_DEFAULT_PARTITION = '__HIVE_DEFAULT_PARTITION__';

const INTEGER = /^[+-]?\d+$/;
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const SPECIAL_FLOAT = /^[+-]?(NaN|Infinity|Inf)$/i;
const DATE = /^[+-]?\d{4,}-\d{1,2}-\d{1,2}$/;
const TIMESTAMP = /^([+-]?\d{4,}-\d{1,2}-\d{1,2})[ T](\d{1,2}:\d{2}:\d{2}(\.\d{1,9})?)(Z|[+-]\d{2}(:?\d{2})?)?$/;

/** True when a serialized partition value means SQL null (absent, JSON null, empty string, Hive default). */
export function isNullPartitionValue(raw: string | null | undefined): raw is null | undefined {
  return raw === null || raw === undefined || raw === '' || raw === HIVE_DEFAULT_PARTITION;
}

/**
 * A DuckDB SQL expression of type `sqlType(type)` for one serialized partition value. Timestamps
 * written without a zone are read as UTC (the protocol says "the time zone of the writer", which the
 * log does not record). Throws a plain Error when the value does not fit the type.
 */
export function partitionValueSql(raw: string | null | undefined, type: DeltaType): string {
  if (typeof type !== 'string') throw new Error(`partition column of complex type ${JSON.stringify(type)}`);
  const target = sqlType(type);
  if (isNullPartitionValue(raw)) return `CAST(NULL AS ${target})`;
  const bad = (): Error => new Error(`partition value ${JSON.stringify(raw)} is not a valid ${type}`);
  const cast = (text: string): string => `CAST(${quoteString(text)} AS ${target})`;
  switch (type) {
    case 'string':
      return quoteString(raw);
    case 'long':
    case 'integer':
    case 'short':
    case 'byte':
      if (!INTEGER.test(raw)) throw bad();
      return cast(raw);
    case 'float':
    case 'double':
      if (!NUMBER.test(raw) && !SPECIAL_FLOAT.test(raw)) throw bad();
      return cast(raw);
    case 'boolean': {
      const lower = raw.toLowerCase();
      if (lower !== 'true' && lower !== 'false') throw bad();
      return lower.toUpperCase();
    }
    case 'date':
      if (!DATE.test(raw)) throw bad();
      return cast(raw);
    case 'timestamp': {
      const m = TIMESTAMP.exec(raw);
      if (!m) throw bad();
      const zone = m[4] === undefined ? '+00' : m[4] === 'Z' ? '+00' : m[4];
      return cast(`${m[1]} ${m[2]}${zone}`);
    }
    case 'timestamp_ntz': {
      const m = TIMESTAMP.exec(raw);
      if (!m || m[4] !== undefined) throw bad();
      return cast(`${m[1]} ${m[2]}`);
    }
    case 'binary':
      return `from_hex(${quoteString(Buffer.from(raw, 'latin1').toString('hex'))})`;
    default:
      if (decimalOf(type) || type === 'decimal') {
        if (!NUMBER.test(raw)) throw bad();
        return cast(raw);
      }
      throw new Error(`unsupported partition column type ${type}`);
  }
}
