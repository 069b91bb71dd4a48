// Reading a SQL store (MySQL/MariaDB, PostgreSQL) back: the StoreReader of `coinstream query` and the
// dashboard, over one connection of its own (never the writer's), with bound parameters. What differs
// per database comes from its module (mysqlReadAccess, postgresReadAccess): the dialect (quoting,
// epoch-ms expressions) and a read connection whose driver is loaded only on connect().
//
// Also here, because every reader decodes the same rows: the SELECT list of a window or trend row
// (times as epoch ms, as the stores read them back) and the decoding of rows into WindowResult,
// TrendResult and StoredProgress (the DuckDB reader uses them too).
import { CoinstreamError, UsageError } from '../../core/errors.js';
import type { TrendResult, WindowResult } from '../../engine/contract.js';
import type { SourcePosition } from '../../sources/contract.js';
import type { RangeQuery, StoredProgress, StoreReader } from '../contract.js';
import { foreignTable, tablesThere, watermarkFromStore, type DriverError, type SqlDialect, type SqlRow } from './dialect.js';
import { mask, type SqlTarget } from './target.js';

/** One read connection: a SELECT with bound parameters, written with the dialect's placeholders. */
export interface SqlReadConnection {
  query(sql: string, params: readonly unknown[]): Promise<SqlRow[]>;
  end(): Promise<void>;
}

/** What a SQL store kind gives the reader: where, how to write SQL for it, and how to connect. */
export interface SqlReadAccess {
  target: SqlTarget;
  dialect: SqlDialect;
  /** Opens a connection (loads the driver now); times are bound as Date objects. */
  connect(): Promise<SqlReadConnection>;
}

// --- Shared by every reader (DuckDB too). ---

/** The stream_progress row of the job itself (engine state), beside one row per source. */
const JOB_ROW = '*';

export const WINDOW_COLUMNS = ['asset', 'window_start', 'window_end', 'trades', 'total_volume', 'total_amount', 'average_price', 'vwap', 'open', 'high', 'low', 'close', 'buy_volume', 'sell_volume', 'is_final', 'updated_at'];
export const TREND_COLUMNS = ['asset', 'window_start', 'window_end', 'vwap', 'prev_vwap', 'trend', 'avg_price_6m', 'change_6m_pct', 'windows_6m', 'is_final'];
const TIME_COLUMNS = new Set(['window_start', 'window_end', 'updated_at']);

/** How a SELECT is written for one database: identifiers quoted, a timestamp column as epoch ms. */
export interface ReadSyntax {
  id(name: string): string;
  epochMs(column: string): string;
}

/** `t.c AS prefix_c, ...`: times as epoch ms. */
export function selectList(s: ReadSyntax, table: string, columns: readonly string[], prefix = ''): string {
  return columns.map((c) => `${TIME_COLUMNS.has(c) ? s.epochMs(`${table}.${s.id(c)}`) : `${table}.${s.id(c)}`} AS ${s.id(prefix + c)}`).join(', ');
}

/** Earliest and latest times the readers bind (MySQL's DATETIME range). */
const MIN_MS = Date.UTC(1000, 0, 1);
const MAX_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/** [from, to) as whole milliseconds within the storable range (times are stored in whole ms). */
export function timeRange(o: { from: number; to: number }): { from: number; to: number } {
  if (Number.isNaN(o.from) || Number.isNaN(o.to)) throw new UsageError('a time range needs numbers (epoch ms), not NaN');
  const clamp = (ms: number) => Math.min(MAX_MS, Math.max(MIN_MS, ms));
  return { from: clamp(Math.ceil(o.from)), to: clamp(Math.floor(o.to)) };
}

/** ` LIMIT n`, or nothing. */
export function limitClause(limit: number | undefined): string {
  if (limit === undefined) return '';
  if (!Number.isSafeInteger(limit) || limit < 0) throw new UsageError(`limit ${limit} must be a whole number >= 0`);
  return ` LIMIT ${limit}`;
}

/**
 * A range read (StoreReader.windowsBetween): `select` (FROM table x WHERE ...) ordered by the window
 * key (`key(alias)`: asset, start, end), its first `limit` rows; with `newest`, its last `limit` rows, picked by the
 * database (a dashboard asking for the latest 200 windows of a store of millions read them all, ~6 s),
 * then put in key order.
 */
export function rangeSelect(select: string, key: (alias: string) => [asset: string, start: string, end: string], o: Pick<RangeQuery, 'limit' | 'newest'>): string {
  if (!o.newest || o.limit === undefined) return `${select}\nORDER BY ${key('x').join(', ')}${limitClause(o.limit)}`;
  const [asset, start, end] = key('x');
  return `SELECT * FROM (${select}\nORDER BY ${start} DESC, ${end} DESC, ${asset} DESC${limitClause(o.limit)}) y ORDER BY ${key('y').join(', ')}`;
}

export function truthy(v: unknown): boolean {
  return v === true || v === 1 || v === '1' || v === 't' || v === 1n;
}

/** A trade_windows row as selectList wrote it. */
export function windowFromRow(r: SqlRow, prefix = ''): WindowResult {
  const n = (k: string) => Number(r[prefix + k]);
  return {
    asset: String(r[`${prefix}asset`]), windowStart: n('window_start'), windowEnd: n('window_end'), trades: n('trades'),
    totalVolume: n('total_volume'), totalAmount: n('total_amount'), averagePrice: n('average_price'), vwap: n('vwap'),
    open: n('open'), high: n('high'), low: n('low'), close: n('close'), buyVolume: n('buy_volume'), sellVolume: n('sell_volume'),
    isFinal: truthy(r[`${prefix}is_final`]), updatedAt: n('updated_at'),
  };
}

/** A price_trends row as selectList wrote it; undefined when a LEFT JOIN found none. */
export function trendFromRow(r: SqlRow, prefix = ''): TrendResult | undefined {
  const v = (k: string) => r[prefix + k];
  if (v('is_final') === null || v('is_final') === undefined) return undefined;
  return {
    asset: String(v('asset')), windowStart: Number(v('window_start')), windowEnd: Number(v('window_end')), vwap: Number(v('vwap')),
    prevVwap: v('prev_vwap') === null ? null : Number(v('prev_vwap')), trend: (v('trend') as TrendResult['trend']) ?? null,
    avgPrice6m: Number(v('avg_price_6m')), change6mPct: Number(v('change_6m_pct')), windows6m: Number(v('windows_6m')), isFinal: truthy(v('is_final')),
  };
}

/** Windows joined with their trends, as latestWindows returns them. */
export function windowsWithTrends(rows: SqlRow[]): { window: WindowResult; trend?: TrendResult }[] {
  return rows.map((r) => {
    const window = windowFromRow(r);
    const trend = trendFromRow(r, 't_');
    return trend ? { window, trend } : { window };
  });
}

/**
 * The job's progress from its stream_progress rows (source, position, watermark, batch_id, settings,
 * engine_state, finished, updated_at as epoch ms), as the stores' readProgress builds it: null
 * without the job row. The watermark's ±Infinity sentinel (SQL stores) is read back as ±Infinity.
 */
export function progressFromRows(job: string, rows: SqlRow[]): StoredProgress | null {
  const jobRow = rows.find((r) => r.source === JOB_ROW);
  if (!jobRow) return null;
  const positions: Record<string, SourcePosition> = {};
  for (const r of rows) if (r.source !== JOB_ROW && r.position !== null) positions[String(r.source)] = JSON.parse(String(r.position)) as SourcePosition;
  return {
    job, positions, batchId: Number(jobRow.batch_id), settings: String(jobRow.settings), engineState: String(jobRow.engine_state),
    watermark: watermarkFromStore(Number(jobRow.watermark)), finished: truthy(jobRow.finished), updatedAt: Number(jobRow.updated_at),
  };
}

/** Rejected counts from (reason, n) rows, keys in code-point order. */
export function countsFromRows(rows: SqlRow[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of [...rows].sort((a, b) => (String(a.reason) < String(b.reason) ? -1 : 1))) out[String(r.reason)] = Number(r.n);
  return out;
}

// --- The SQL reader. ---

/** A table the reader needs is not there: the store was never written. */
function isMissingTable(err: unknown): boolean {
  const code = String((err as DriverError)?.code ?? '');
  return code === 'ER_NO_SUCH_TABLE' || code === '42P01';
}

/** A column the reader selects is not there: a table of that name that another application made. */
function isMissingColumn(err: unknown): boolean {
  const code = String((err as DriverError)?.code ?? '');
  return code === 'ER_BAD_FIELD_ERROR' || code === '42703';
}

export class SqlReader implements StoreReader {
  readonly name: string;
  private conn: SqlReadConnection | null = null;
  private readonly d: SqlDialect;

  private constructor(private readonly access: SqlReadAccess) {
    this.name = access.target.display;
    this.d = access.dialect;
  }

  /** Connects now, so that an unreachable server is one error at open (SINK_FAILED, password masked). */
  static async open(access: SqlReadAccess): Promise<SqlReader> {
    const reader = new SqlReader(access);
    await reader.connection();
    return reader;
  }

  /** `lastMs` back from the newest window end (of `asset`, or of all): where latestWindows and assets look from; null for no window. */
  private async recentFrom(lastMs: number, asset?: string): Promise<Date | null> {
    const q = this.params();
    const [row] = await this.query(`SELECT ${this.d.epochMs('max(window_end)')} AS t FROM trade_windows${asset === undefined ? '' : ` WHERE asset = ${q.p(asset)}`}`, q.values);
    if (row?.t === null || row?.t === undefined) return null;
    return new Date(timeRange({ from: Number(row.t) - lastMs, to: 0 }).from);
  }

  async latestWindows(o: { asset?: string; lastMs: number }): Promise<{ window: WindowResult; trend?: TrendResult }[]> {
    const d = this.d;
    const since = await this.recentFrom(o.lastMs, o.asset);
    if (since === null) return [];
    const q = this.params();
    const rows = await this.query(
      `SELECT ${selectList(d, 'w', WINDOW_COLUMNS)}, ${selectList(d, 'p', TREND_COLUMNS, 't_')}
FROM trade_windows w LEFT JOIN price_trends p ON p.asset = w.asset AND p.window_start = w.window_start AND p.window_end = w.window_end
WHERE ${o.asset === undefined ? '' : `w.asset = ${q.p(o.asset)} AND `}w.window_end > ${q.p(since)}
ORDER BY ${this.byKey('w')}`,
      q.values,
    );
    return windowsWithTrends(rows);
  }

  async assets(o: { lastMs: number }): Promise<string[]> {
    const since = await this.recentFrom(o.lastMs);
    if (since === null) return [];
    const q = this.params();
    const rows = await this.query(`SELECT asset FROM trade_windows WHERE window_end > ${q.p(since)} GROUP BY asset ORDER BY asset${this.d.scheme === 'postgres' ? ' COLLATE "C"' : ''}`, q.values);
    return rows.map((r) => String(r.asset));
  }

  async windowsBetween(o: RangeQuery): Promise<WindowResult[]> {
    return (await this.between('trade_windows', WINDOW_COLUMNS, o)).map((r) => windowFromRow(r));
  }

  async trends(o: RangeQuery): Promise<TrendResult[]> {
    return (await this.between('price_trends', TREND_COLUMNS, o)).map((r) => trendFromRow(r)!);
  }

  async rejectedCounts(): Promise<Record<string, number>> {
    return countsFromRows(await this.query('SELECT reason, count(*) AS n FROM rejected_trades GROUP BY reason', []));
  }

  async jobSettings(): Promise<string | null> {
    const q = this.params();
    const rows = await this.query(`SELECT settings FROM stream_progress WHERE ${this.d.id('source')} = ${q.p('*')} ORDER BY updated_at DESC LIMIT 1`, q.values).catch(() => []);
    return rows.length > 0 ? String(rows[0].settings) : null;
  }

  async progress(job: string): Promise<StoredProgress | null> {
    const d = this.d;
    const q = this.params();
    const rows = await this.query(
      `SELECT ${d.id('source')} AS ${d.id('source')}, ${d.id('position')} AS ${d.id('position')}, watermark, batch_id, settings, engine_state, finished, ${d.epochMs('updated_at')} AS updated_at FROM stream_progress WHERE job = ${q.p(job)}`,
      q.values,
    );
    return progressFromRows(job, rows);
  }

  async close(): Promise<void> {
    const conn = this.conn;
    this.conn = null;
    await conn?.end().catch(() => undefined);
  }

  private async between(table: string, columns: readonly string[], o: RangeQuery): Promise<SqlRow[]> {
    const { from, to } = timeRange(o);
    const q = this.params();
    return this.query(
      rangeSelect(
        `SELECT ${selectList(this.d, 'x', columns)} FROM ${table} x
WHERE ${o.asset === undefined ? '' : `x.asset = ${q.p(o.asset)} AND `}x.window_start >= ${q.p(new Date(from))} AND x.window_end <= ${q.p(new Date(to))}`,
        (t) => this.key(t),
        o,
      ),
      q.values,
    );
  }

  /** The window key, assets in code-point order (as DuckDB and MySQL's utf8mb4_bin sort). */
  private key(t: string): [string, string, string] {
    return [`${t}.asset${this.d.scheme === 'postgres' ? ' COLLATE "C"' : ''}`, `${t}.window_start`, `${t}.window_end`];
  }

  private byKey(t: string): string {
    return this.key(t).join(', ');
  }

  /** Bound parameters: `p(value)` adds one and returns its placeholder (? or $n). */
  private params(): { values: unknown[]; p(value: unknown): string } {
    const values: unknown[] = [];
    const scheme = this.d.scheme;
    return {
      values,
      p(value) {
        values.push(value);
        return scheme === 'postgres' ? `$${values.length}` : '?';
      },
    };
  }

  private async connection(): Promise<SqlReadConnection> {
    if (this.conn) return this.conn;
    try {
      this.conn = await this.access.connect();
      return this.conn;
    } catch (err) {
      const retriable = this.d.isRetriable(err);
      throw new CoinstreamError('SINK_FAILED', `${this.name}: ${retriable ? 'cannot reach the server' : 'cannot open the store'}: ${this.describe(err)}`, retriable, { cause: err });
    }
  }

  private async query(sql: string, params: readonly unknown[]): Promise<SqlRow[]> {
    const conn = await this.connection();
    try {
      return await conn.query(sql, params);
    } catch (err) {
      if (isMissingTable(err)) {
        throw new UsageError(`${this.name} holds no coinstream tables (${this.describe(err)}); run \`coinstream run --sink ...\` with it first, or point --store at one`);
      }
      if (isMissingColumn(err)) {
        const foreign = await tablesThere(this.d, (q) => conn.query(q, [])).then((there) => foreignTable(this.d, there)).catch(() => null);
        throw new CoinstreamError('CONFIG', `${this.name} is not a coinstream store: ${foreign ?? `a table of ours there has other columns (${this.describe(err)})`}; point --store at a database coinstream wrote`);
      }
      const retriable = this.d.isRetriable(err);
      // A lost connection is replaced at the next call (the dashboard reads again and again).
      if (retriable) await this.close();
      throw new CoinstreamError('SINK_FAILED', `${this.name}: reading failed: ${this.describe(err)}`, retriable, { cause: err });
    }
  }

  private describe(err: unknown): string {
    return mask(this.d.describe(err), this.access.target.password);
  }
}
