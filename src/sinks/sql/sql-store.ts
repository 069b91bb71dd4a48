// A SQL database as a store (MySQL/MariaDB, PostgreSQL): the same tables, keys and recovery contract
// as the DuckDB store (DESIGN.md, "Tables" and "Recovery"), in one transaction per batch:
//
//   BEGIN; upsert trade_windows, price_trends (by key); insert rejected_trades, trades;
//   upsert stream_progress (the job row '*' with the engine state, one row per source with its
//   position); COMMIT.
//
// and only then is the batch acknowledged. Statements are multi-row and chunked below the server's
// limit. What differs per database lives in its dialect (src/sinks/mysql, src/sinks/postgres).
//
// Outages: the store holds one connection from the driver's pool between batches. When the server
// goes away (refused, reset, killed, shutting down), the batch's transaction is rolled back by the
// server; the store reconnects with capped exponential backoff (0.5 s doubling to 10 s) and runs the
// whole batch again, for as long as it takes. Meanwhile the pipeline's bounded queue stops reading, so
// nothing is lost. One warn line when an outage starts (with the cause), one info line when it ends.
// A retry first reads the job's stored batch id (SELECT ... FOR UPDATE, which waits for a commit still
// in flight on the lost connection): if the lost COMMIT did go through, the batch is not written twice.
// (A batch without progress, written to a store that is ahead after a crash, cannot be checked so.)
// Errors a retry cannot fix (syntax, a constraint, credentials) fail the batch at once, not retriable.
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay, type BackoffOptions } from '../../core/backoff.js';
import { CoinstreamError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { fencedError, type BatchProgress, type OutputBatch, type Sink, type StoredProgress, type TradeBatch } from '../contract.js';
import { foreignTable, tableOf, tablesThere, watermarkToStore, type SqlDialect, type SqlDriver, type SqlRow, type SqlSession } from './dialect.js';
import { mask, type SqlTarget } from './target.js';
import { progressFromRows } from './sql-reader.js';

/** The stream_progress row of the job itself (engine state), beside one row per source. */
const JOB_ROW = '*';

const WINDOW_KEY = ['asset', 'window_start', 'window_end'] as const;
const WINDOW_COLUMNS = ['asset', 'window_start', 'window_end', 'trades', 'total_volume', 'total_amount', 'average_price', 'vwap', 'open', 'high', 'low', 'close', 'buy_volume', 'sell_volume', 'is_final', 'updated_at'];
const TREND_COLUMNS = ['asset', 'window_start', 'window_end', 'vwap', 'prev_vwap', 'trend', 'avg_price_6m', 'change_6m_pct', 'windows_6m', 'is_final'];
const REJECTED_COLUMNS = ['received_at', 'source', 'reason', 'detail', 'raw'];
const TRADE_COLUMNS = ['exchange', 'base', 'quote', 'direction', 'price', 'volume', 'timestamp', 'price_usd', 'trade_id', 'received_at'];
const PROGRESS_KEY = ['job', 'source'];
const PROGRESS_COLUMNS = ['job', 'source', 'position', 'watermark', 'batch_id', 'settings', 'engine_state', 'finished', 'updated_at'];
export const SQL_TABLES = ['trade_windows', 'price_trends', 'rejected_trades', 'trades', 'stream_progress'];

/** Reconnect backoff: 0.5 s doubling to 10 s. */
const RECONNECT: BackoffOptions = { initialMs: 500, maxMs: 10_000, factor: 2 };

export class SqlStore implements Sink {
  readonly name: string;
  private driver: SqlDriver | null = null;
  private session: SqlSession | null = null;
  private maxChars = 1 << 20;
  /** Since when the server has been unreachable, and why; null while it is fine. */
  private outage: { since: number; cause: string } | null = null;

  constructor(
    private readonly target: SqlTarget,
    private readonly dialect: SqlDialect,
    private readonly logger: Logger,
  ) {
    this.name = target.display;
  }

  async open(): Promise<void> {
    this.driver = await this.dialect.openDriver(this.target, this.logger);
    let missing: string[] = [];
    try {
      const session = await this.driver.connect();
      this.session = session;
      const there = await tablesThere(this.dialect, (sql) => session.query(sql));
      // Refused before any table is made, rather than failing at the first batch with "Unknown
      // column" after making the others beside it.
      const foreign = foreignTable(this.dialect, there);
      if (foreign) throw new CoinstreamError('CONFIG', `${this.name} is not a coinstream store: ${foreign}; give another database in --sink`);
      // Only the tables that are not there: a user with no CREATE privilege can write tables that an
      // administrator made beforehand (with the schema's statements).
      const creates = this.dialect.schema.filter((ddl) => !there.has(tableOf(ddl) ?? ''));
      missing = creates.map((ddl) => tableOf(ddl) ?? '');
      for (const ddl of creates) await session.query(ddl);
      this.maxChars = await this.dialect.maxStatementChars(session);
    } catch (err) {
      await this.close().catch((closeErr: unknown) => this.logger.debug({ err: this.describe(closeErr) }, `${this.name}: closing after a failed open failed`));
      if (err instanceof CoinstreamError && err.code === 'CONFIG') throw err;
      const retriable = this.dialect.isRetriable(err);
      const hint = isDenied(err) && missing.length > 0 ? `; the user needs the privilege to create the tables that are not there (${missing.join(', ')}), or an administrator makes them first` : '';
      throw new CoinstreamError('SINK_FAILED', `${this.name}: ${retriable ? 'cannot reach the server' : 'cannot open the store'}: ${this.describe(err)}${hint}`, retriable, { cause: err });
    }
    this.logger.info({ sink: this.name, maxStatementChars: this.maxChars }, `${this.name}: store open`);
  }

  async write(batch: OutputBatch): Promise<void> {
    await this.withSession(`writing batch ${batch.batchId}`, async (s, retry) => {
      await s.query(this.dialect.begin);
      try {
        const p = batch.progress;
        if (p && (retry || p.expectBatchId !== undefined)) {
          // The job's progress row, locked until COMMIT: the lost attempt may have committed (its
          // batch id says so), or another owner of the job may have written since we read it.
          const [row] = await s.query(this.dialect.forUpdate.replace('$JOB', this.dialect.str(p.job)));
          const stored = row ? Number(row.batch_id) : -1;
          if (retry && stored >= batch.batchId) {
            await s.query('ROLLBACK');
            this.logger.info({ sink: this.name, batchId: batch.batchId }, `${this.name}: batch ${batch.batchId} was committed before the connection was lost; not writing it again`);
            return;
          }
          if (p.expectBatchId !== undefined && stored !== p.expectBatchId) {
            await s.query('ROLLBACK');
            throw fencedError(this.name, p.job, stored, p.expectBatchId);
          }
        }
        // The next statement is built while the server runs the one before (one in flight).
        let running: Promise<unknown> | null = null;
        for (const sql of this.statements(batch)) {
          if (running) await running;
          running = s.query(sql);
        }
        if (running) await running;
        await s.query('COMMIT');
      } catch (err) {
        if (!this.dialect.isRetriable(err)) await this.rollback(s);
        throw err;
      }
    });
  }

  async close(): Promise<void> {
    this.session?.release(false);
    this.session = null;
    const driver = this.driver;
    this.driver = null;
    await driver?.end();
  }

  /** The job's progress as of the last committed batch; null for a job never run in this store. */
  async readProgress(job: string): Promise<StoredProgress | null> {
    const d = this.dialect;
    return this.withSession('reading progress', async (s) => {
      const rows = await s.query(
        `SELECT ${d.id('source')} AS source, ${d.id('position')} AS position, watermark, batch_id, settings, engine_state, finished, ${d.epochMs('updated_at')} AS updated_at FROM stream_progress WHERE job = ${d.str(job)}`,
      );
      const progress = progressFromRows(job, rows);
      if (!progress) {
        // Rows of other jobs (the partitions of a `process` group share a store) are theirs; rows of no
        // job at all were written by an earlier coinstream and cannot be resumed.
        if ((await s.query('SELECT 1 AS x FROM stream_progress LIMIT 1')).length > 0) return null;
        for (const table of ['trade_windows', 'rejected_trades', 'trades']) {
          if ((await s.query(`SELECT 1 AS x FROM ${table} LIMIT 1`)).length === 0) continue;
          throw new CoinstreamError(
            'CONFIG',
            `${this.name} holds results but no progress of job "${job}" to resume them from (written by an earlier coinstream, or by another job); start over with --fresh, or use another database`,
          );
        }
        return null;
      }
      return progress;
    });
  }

  /** The jobs with progress in this database (one `run`, or the partitions of one `process` group). */
  async jobs(): Promise<string[]> {
    return this.withSession('reading the jobs', async (s) => (await s.query('SELECT DISTINCT job FROM stream_progress ORDER BY job')).map((r) => String(r.job)));
  }

  /** Removes every row and the job's progress (`--fresh`), in one transaction. */
  async clearJob(job: string): Promise<void> {
    const d = this.dialect;
    await this.withSession('clearing the job', async (s) => {
      await s.query(d.begin);
      try {
        for (const table of ['trade_windows', 'price_trends', 'rejected_trades', 'trades']) await s.query(`DELETE FROM ${table}`);
        await s.query(`DELETE FROM stream_progress WHERE job = ${d.str(job)}`);
        await s.query('COMMIT');
      } catch (err) {
        if (!d.isRetriable(err)) await this.rollback(s);
        throw err;
      }
    });
  }

  /**
   * Runs `work` on the store's connection. Errors a retry can fix: reconnect with backoff and run it
   * again, as long as it takes; others: SINK_FAILED at once (CONFIG errors of `work` pass through).
   */
  private async withSession<T>(what: string, work: (s: SqlSession, retry: boolean) => Promise<T>): Promise<T> {
    const driver = this.driver;
    if (!driver) throw new CoinstreamError('SINK_FAILED', `${this.name}: ${what} before open`);
    for (let attempt = 0; ; attempt++) {
      const delayMs = backoffDelay(attempt + 1, RECONNECT);
      try {
        let s = this.session;
        if (s?.lost) throw s.lost;
        if (!s) s = this.session = await driver.connect();
        const out = await work(s, attempt > 0);
        if (this.outage) {
          const lastedMs = Date.now() - this.outage.since;
          this.logger.info({ sink: this.name, outageMs: lastedMs, attempts: attempt + 1 }, `${this.name}: the server is back after ${(lastedMs / 1000).toFixed(1)} s (${attempt} retries); ${what} done`);
          this.outage = null;
        }
        return out;
      } catch (err) {
        if (err instanceof CoinstreamError) throw err;
        if (!this.dialect.isRetriable(err)) {
          throw new CoinstreamError('SINK_FAILED', `${this.name}: ${what} failed: ${this.describe(err)}`, false, { cause: err });
        }
        this.session?.release(true);
        this.session = null;
        const cause = this.describe(err);
        if (!this.outage) {
          this.outage = { since: Date.now(), cause };
          this.logger.warn(
            { sink: this.name, cause },
            `${this.name}: lost the connection to the server (${cause}); reconnecting with backoff up to ${RECONNECT.maxMs / 1000} s and ${what} again, for as long as it takes (reading waits meanwhile)`,
          );
        } else {
          this.logger.debug({ sink: this.name, cause, attempt, retryInMs: delayMs }, `${this.name}: still unreachable`);
        }
        await sleep(delayMs);
      }
    }
  }

  private async rollback(s: SqlSession): Promise<void> {
    await s.query('ROLLBACK').catch((err: unknown) => this.logger.warn({ sink: this.name, err: this.describe(err) }, `${this.name}: rollback after a failed statement failed`));
  }

  private describe(err: unknown): string {
    return mask(this.dialect.describe(err), this.target.password);
  }

  /** The batch's statements, chunked below the server's statement limit. */
  private *statements(batch: OutputBatch): Generator<string> {
    const d = this.dialect;
    const max = this.maxChars;
    const t = (ms: number) => d.time(ms);
    const windows = lastByKey(batch.windows).map(
      (w) =>
        `(${d.str(w.asset)},${t(w.windowStart)},${t(w.windowEnd)},${w.trades},${d.num(w.totalVolume)},${d.num(w.totalAmount)},${d.num(w.averagePrice)},${d.num(w.vwap)},${d.num(w.open)},${d.num(w.high)},${d.num(w.low)},${d.num(w.close)},${d.num(w.buyVolume)},${d.num(w.sellVolume)},${d.bool(w.isFinal)},${t(w.updatedAt)})`,
    );
    yield* chunked(insertHead(d, 'trade_windows', WINDOW_COLUMNS), windows, d.upsert(WINDOW_KEY, WINDOW_COLUMNS), max);
    const trends = lastByKey(batch.trends).map(
      (r) =>
        `(${d.str(r.asset)},${t(r.windowStart)},${t(r.windowEnd)},${d.num(r.vwap)},${r.prevVwap === null ? 'NULL' : d.num(r.prevVwap)},${r.trend === null ? 'NULL' : d.str(r.trend)},${d.num(r.avgPrice6m)},${d.num(r.change6mPct)},${r.windows6m},${d.bool(r.isFinal)})`,
    );
    yield* chunked(insertHead(d, 'price_trends', TREND_COLUMNS), trends, d.upsert(WINDOW_KEY, TREND_COLUMNS), max);
    const rejected = batch.rejected.map((r) => `(${t(r.receivedAt)},${d.str(r.source)},${d.str(r.reason)},${d.str(r.detail)},${d.str(r.raw)})`);
    yield* chunked(insertHead(d, 'rejected_trades', REJECTED_COLUMNS), rejected, '', max);
    yield* chunked(insertHead(d, 'trades', TRADE_COLUMNS), tradeRows(d, batch.trades), '', max);
    if (batch.progress) yield* chunked(insertHead(d, 'stream_progress', PROGRESS_COLUMNS), progressRows(d, batch.batchId, batch.progress), d.upsert(PROGRESS_KEY, PROGRESS_COLUMNS), max);
  }
}

function insertHead(d: SqlDialect, table: string, columns: readonly string[]): string {
  return `INSERT INTO ${table} (${columns.map((c) => d.id(c)).join(',')}) VALUES `;
}

/** Multi-row statements `head row,row,... tail`, each at most `max` characters (or one row). */
function* chunked(head: string, rows: Iterable<string>, tail: string, max: number): Generator<string> {
  let parts: string[] = [];
  let size = head.length + tail.length;
  for (const row of rows) {
    if (parts.length > 0 && size + row.length + 1 > max) {
      yield `${head}${parts.join(',')}${tail}`;
      parts = [];
      size = head.length + tail.length;
    }
    parts.push(row);
    size += row.length + 1;
  }
  if (parts.length > 0) yield `${head}${parts.join(',')}${tail}`;
}

/** One row per key, the last one given (PostgreSQL's upsert refuses a key twice in one statement). */
function lastByKey<R extends { asset: string; windowStart: number; windowEnd: number }>(rows: R[]): R[] {
  const byKey = new Map<string, R>();
  for (const r of rows) byKey.set(`${r.asset}\u0000${r.windowStart}\u0000${r.windowEnd}`, r);
  return byKey.size === rows.length ? rows : [...byKey.values()];
}

/** The trades' value tuples; what repeats (exchange, base, quote, direction) is quoted once per key. */
function* tradeRows(d: SqlDialect, b: TradeBatch): Generator<string> {
  const prefixes = b.keys.map((k) => `(${d.str(k.exchange)},${d.str(k.base)},${d.str(k.quote)},${d.str(k.direction)},`);
  const ids = b.tradeId;
  for (let i = 0; i < b.length; i++) {
    const id = ids ? ids[i] : null;
    const received = b.receivedAt[i];
    yield `${prefixes[b.key[i]]}${d.num(b.price[i])},${d.num(b.volume[i])},${d.time(b.timestamp[i])},${d.num(b.priceUsd[i])},${id == null ? 'NULL' : d.str(id)},${Number.isNaN(received) ? 'NULL' : d.time(received)})`;
  }
}

/** The job row '*' (engine state) and one row per source (position), as the DuckDB store writes them. */
function progressRows(d: SqlDialect, batchId: number, p: BatchProgress): string[] {
  const now = d.time(Date.now());
  const common = `${d.num(watermarkToStore(p.watermark))},${batchId},${d.str(p.settings)}`;
  const rows = [`(${d.str(p.job)},${d.str(JOB_ROW)},NULL,${common},${d.str(p.engineState)},${d.bool(p.finished)},${now})`];
  for (const [source, position] of Object.entries(p.positions)) {
    rows.push(`(${d.str(p.job)},${d.str(source)},${d.str(JSON.stringify(position))},${common},NULL,${d.bool(p.finished)},${now})`);
  }
  return rows;
}

export type { SqlRow };

/** The server refused a statement for lack of a privilege (MySQL/MariaDB, PostgreSQL). */
function isDenied(err: unknown): boolean {
  const code = String((err as { code?: unknown })?.code ?? '');
  return code === 'ER_TABLEACCESS_DENIED_ERROR' || code === 'ER_DBACCESS_DENIED_ERROR' || code === 'ER_SPECIFIC_ACCESS_DENIED_ERROR' || code === '42501';
}
