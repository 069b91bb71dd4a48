// Reading a DuckDB store back (`coinstream query`, the dashboard): the file opened read-only, so a
// reader never writes and never takes the writer's lock (DuckDB refuses it while a run holds the file:
// STORE_LOCKED, with what to do). The same rows and decoding as the SQL reader (sql/sql-reader.ts).
import { existsSync } from 'node:fs';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { CoinstreamError, UsageError } from '../../core/errors.js';
import type { TrendResult, WindowResult } from '../../engine/contract.js';
import type { RangeQuery, StoredProgress, StoreReader } from '../contract.js';
import {
  countsFromRows, progressFromRows, rangeSelect, selectList, timeRange, trendFromRow, TREND_COLUMNS, WINDOW_COLUMNS, windowFromRow, windowsWithTrends, type ReadSyntax,
} from '../sql/sql-reader.js';
import { openDuckDB, whyNotDuckDB } from './open.js';

const SYNTAX: ReadSyntax = { id: (name) => `"${name}"`, epochMs: (column) => `epoch_ms(${column})` };

/** The newest window end (of $asset, or of all), then the windows ending within $last ms of it. */
const LATEST = `
WITH newest AS (SELECT max(window_end) AS t FROM trade_windows WHERE $asset IS NULL OR asset = $asset)
SELECT ${selectList(SYNTAX, 'w', WINDOW_COLUMNS)}, ${selectList(SYNTAX, 'p', TREND_COLUMNS, 't_')}
FROM trade_windows w
LEFT JOIN price_trends p ON p.asset = w.asset AND p.window_start = w.window_start AND p.window_end = w.window_end, newest
WHERE ($asset IS NULL OR w.asset = $asset) AND w.window_end > newest.t - to_milliseconds(CAST($last AS BIGINT))
ORDER BY w.asset, w.window_start, w.window_end`;

type Row = Record<string, unknown>;

export class DuckDBReader implements StoreReader {
  private constructor(
    readonly name: string,
    private instance: DuckDBInstance | null,
    private conn: DuckDBConnection | null,
  ) {}

  /** Opens the file read-only; a missing file is a usage error (the one line `query` has always said). */
  static async open(path: string): Promise<DuckDBReader> {
    if (!existsSync(path)) throw new UsageError(`no store at ${path}; run \`coinstream run\` first, or point --store at one`);
    // DuckDB's own words for another kind of file are no help ("Cannot launch in-memory database in
    // read-only mode!" for a .jsonl, say).
    const why = whyNotDuckDB(path, { emptyIsStore: false });
    if (why !== null) throw new UsageError(`${path} is not a DuckDB store (${why}); point --store at the file \`coinstream run --sink duckdb:PATH\` wrote`);
    const { instance, conn } = await openDuckDB(path, { readOnly: true });
    return new DuckDBReader(path, instance, conn);
  }

  /**
   * A reader over a database someone else built with the store's tables (trade_windows, price_trends,
   * rejected_trades; stream_progress only if `progress` is used): the Delta reader's in-memory copy.
   * It takes both over: close() closes them.
   */
  static over(name: string, instance: DuckDBInstance, conn: DuckDBConnection): DuckDBReader {
    return new DuckDBReader(name, instance, conn);
  }

  async latestWindows(o: { asset?: string; lastMs: number }): Promise<{ window: WindowResult; trend?: TrendResult }[]> {
    return windowsWithTrends(await this.rows(LATEST, { asset: o.asset ?? null, last: o.lastMs }));
  }

  async assets(o: { lastMs: number }): Promise<string[]> {
    const rows = await this.rows(
      'SELECT DISTINCT asset FROM trade_windows WHERE window_end > (SELECT max(window_end) FROM trade_windows) - to_milliseconds(CAST($last AS BIGINT)) ORDER BY asset',
      { last: o.lastMs },
    );
    return rows.map((r) => String(r.asset));
  }

  async windowsBetween(o: RangeQuery): Promise<WindowResult[]> {
    return (await this.between('trade_windows', WINDOW_COLUMNS, o)).map((r) => windowFromRow(r));
  }

  async trends(o: RangeQuery): Promise<TrendResult[]> {
    return (await this.between('price_trends', TREND_COLUMNS, o)).map((r) => trendFromRow(r)!);
  }

  async rejectedCounts(): Promise<Record<string, number>> {
    return countsFromRows(await this.rows('SELECT reason, count(*) AS n FROM rejected_trades GROUP BY reason'));
  }

  async jobSettings(): Promise<string | null> {
    const rows = await this.rows("SELECT settings FROM stream_progress WHERE source = '*' ORDER BY updated_at DESC LIMIT 1").catch(() => []);
    return rows.length > 0 ? String(rows[0].settings) : null;
  }

  async progress(job: string): Promise<StoredProgress | null> {
    const rows = await this.rows(
      'SELECT source, position, watermark, batch_id, settings, engine_state, finished, epoch_ms(updated_at) AS updated_at FROM stream_progress WHERE job = $job',
      { job },
    );
    return progressFromRows(job, rows);
  }

  async close(): Promise<void> {
    this.conn?.closeSync();
    this.instance?.closeSync();
    this.conn = null;
    this.instance = null;
  }

  private between(table: string, columns: readonly string[], o: RangeQuery): Promise<Row[]> {
    const { from, to } = timeRange(o);
    return this.rows(
      rangeSelect(
        `SELECT ${selectList(SYNTAX, 'x', columns)} FROM ${table} x
WHERE ($asset IS NULL OR x.asset = $asset) AND x.window_start >= epoch_ms(CAST($from AS BIGINT)) AND x.window_end <= epoch_ms(CAST($to AS BIGINT))`,
        (t) => [`${t}.asset`, `${t}.window_start`, `${t}.window_end`],
        o,
      ),
      { asset: o.asset ?? null, from, to },
    );
  }

  private async rows(sql: string, params?: Record<string, string | number | null>): Promise<Row[]> {
    const conn = this.conn;
    if (!conn) throw new CoinstreamError('SINK_FAILED', `${this.name}: read after close`);
    try {
      return (await conn.runAndReadAll(sql, params)).getRowObjectsJS() as Row[];
    } catch (err) {
      const message = (err as Error).message;
      if (/Table with name \w+ does not exist/i.test(message)) {
        throw new UsageError(`${this.name} holds no coinstream tables; run \`coinstream run --sink duckdb:${this.name}\` first, or point --store at one`);
      }
      throw new CoinstreamError('SINK_FAILED', `${this.name}: reading failed: ${message.split('\n')[0]}`, false, { cause: err });
    }
  }
}
