// Delta's table schema ("Schema Serialization Format" of the protocol): a subset of Spark SQL's
// JSON schema, stored as a string in metaData.schemaString.

export type DeltaPrimitiveType = string; // 'string' | 'long' | 'integer' | ... | 'decimal(p,s)'

export interface DeltaStructField {
  name: string;
  type: DeltaType;
  nullable: boolean;
  metadata: Record<string, unknown>;
}

export interface DeltaStructType {
  type: 'struct';
  fields: DeltaStructField[];
}

export interface DeltaArrayType {
  type: 'array';
  elementType: DeltaType;
  containsNull: boolean;
}

export interface DeltaMapType {
  type: 'map';
  keyType: DeltaType;
  valueType: DeltaType;
  valueContainsNull: boolean;
}

export type DeltaType = DeltaPrimitiveType | DeltaStructType | DeltaArrayType | DeltaMapType;

/** Parses metaData.schemaString; throws a plain Error saying what is wrong (the caller adds where). */
export function parseSchemaString(schemaString: string): DeltaStructType {
  let parsed: unknown;
  try {
    parsed = JSON.parse(schemaString);
  } catch (err) {
    throw new Error(`schemaString is not JSON (${(err as Error).message})`);
  }
  const schema = checkType(parsed, 'schema');
  if (typeof schema === 'string' || schema.type !== 'struct') throw new Error('schemaString is not a struct type');
  return schema;
}

function checkType(value: unknown, where: string): DeltaType {
  if (typeof value === 'string') return value;
  if (value === null || typeof value !== 'object') throw new Error(`bad type at ${where}`);
  const t = value as Record<string, unknown>;
  switch (t.type) {
    case 'struct': {
      if (!Array.isArray(t.fields)) throw new Error(`struct without fields at ${where}`);
      const fields = t.fields.map((f: unknown, i: number): DeltaStructField => {
        if (f === null || typeof f !== 'object' || typeof (f as { name?: unknown }).name !== 'string') throw new Error(`bad field ${i} at ${where}`);
        const field = f as Record<string, unknown>;
        const name = field.name as string;
        return {
          name,
          type: checkType(field.type, `${where}.${name}`),
          nullable: field.nullable !== false,
          metadata: (field.metadata as Record<string, unknown> | undefined) ?? {},
        };
      });
      return { type: 'struct', fields };
    }
    case 'array':
      return { type: 'array', elementType: checkType(t.elementType, `${where}[]`), containsNull: t.containsNull !== false };
    case 'map':
      return { type: 'map', keyType: checkType(t.keyType, `${where}.key`), valueType: checkType(t.valueType, `${where}.value`), valueContainsNull: t.valueContainsNull !== false };
    default:
      throw new Error(`unknown type ${JSON.stringify(t.type)} at ${where}`);
  }
}

const PRIMITIVE_SQL: Record<string, string> = {
  string: 'VARCHAR',
  long: 'BIGINT',
  integer: 'INTEGER',
  short: 'SMALLINT',
  byte: 'TINYINT',
  float: 'FLOAT',
  double: 'DOUBLE',
  boolean: 'BOOLEAN',
  binary: 'BLOB',
  date: 'DATE',
  timestamp: 'TIMESTAMPTZ', // adjusted to UTC
  timestamp_ntz: 'TIMESTAMP',
};

const DECIMAL = /^decimal\(\s*(\d+)\s*,\s*(-?\d+)\s*\)$/;

/** Parses 'decimal(p,s)' into its precision and scale, or undefined for any other type. */
export function decimalOf(type: DeltaType): { precision: number; scale: number } | undefined {
  if (typeof type !== 'string') return undefined;
  const m = DECIMAL.exec(type);
  return m ? { precision: Number(m[1]), scale: Number(m[2]) } : undefined;
}

/** The DuckDB SQL type of a Delta type (for literals and missing columns). */
export function sqlType(type: DeltaType): string {
  if (typeof type === 'string') {
    const primitive = PRIMITIVE_SQL[type];
    if (primitive) return primitive;
    const dec = decimalOf(type);
    if (dec) return `DECIMAL(${dec.precision},${dec.scale})`;
    if (type === 'decimal') return 'DECIMAL(10,0)';
    if (type === 'void') return 'INTEGER'; // never materialised; always NULL
    throw new Error(`unsupported type ${type}`);
  }
  switch (type.type) {
    case 'struct':
      return `STRUCT(${type.fields.map((f) => `${quoteIdent(f.name)} ${sqlType(f.type)}`).join(', ')})`;
    case 'array':
      return `${sqlType(type.elementType)}[]`;
    case 'map':
      return `MAP(${sqlType(type.keyType)}, ${sqlType(type.valueType)})`;
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
