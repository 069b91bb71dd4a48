// `--sink delta:DIR`: DIR/trade_windows, DIR/price_trends, DIR/rejected_trades (and DIR/trades with
// --delta-trades), appended to like Spark's Delta sink in append mode: final rows only, each once.
//
// Each table is a sink of its own with its own progress, because a Delta commit covers one table: the
// pipeline writes them in order (trades, rejected_trades, price_trends, trade_windows) and, after a
// crash between two of them, resumes from the one furthest behind while the ones ahead skip what they
// hold (DESIGN.md, Recovery: "with several sinks, each keeps its own progress"). Windows and trends
// need no positions for that: a window becomes final once the watermark passes its end, so a table
// whose last batch had watermark W holds every final window ending at or before W.
import { existsSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { CoinstreamError, UsageError } from '../../core/errors.js';
import { refuseJoinedSinks } from '../../core/joined-specs.js';
import { userPath } from '../../core/paths.js';
import type { Logger } from '../../core/logger.js';
import { fencedError, type OutputBatch, type Sink, type StoredProgress } from '../contract.js';
import { crashIfAsked } from '../fault.js';
import { WindowEngine } from '../../engine/window-engine.js';
import type { EngineConfig, EngineSnapshot } from '../../engine/contract.js';
import { ENGINE_INFO, progressRecord } from './commit-info.js';
import { decodeRelativePath, encodeDeltaPath } from './files.js';
import type { ParquetWriter } from './parquet.js';
import type { DeltaTableLog } from './table-log.js';
import { DELTA_TABLES, rowsOf, schemaString, type DeltaTableDef, type DeltaTableName } from './tables.js';

/** `--delta-partition`: by `date`, `none`, or `auto` (only the trades archive by date). */
export type DeltaPartitioning = 'auto' | 'date' | 'none';
export const DELTA_PARTITIONINGS: readonly DeltaPartitioning[] = ['auto', 'date', 'none'];

export interface DeltaSinkOptions {
  /** Also archive the accepted trades in DIR/trades. */
  trades?: boolean;
  partition?: DeltaPartitioning;
}

/** The order tables are written in for each batch: trade_windows last. */
const WRITE_ORDER: DeltaTableName[] = ['trades', 'rejected_trades', 'price_trends', 'trade_windows'];

/** One in-memory DuckDB writing the Parquet files of all of a store's tables: opened by the first table, closed by the last. */
class SharedWriter {
  private writer: Promise<ParquetWriter> | null = null;
  private users = 0;

  acquire(): Promise<ParquetWriter> {
    this.users++;
    this.writer ??= import('./parquet.js').then((m) => m.ParquetWriter.open());
    return this.writer;
  }

  async release(): Promise<void> {
    if (--this.users > 0 || !this.writer) return;
    const writer = this.writer;
    this.writer = null;
    (await writer).close();
  }
}

export function isPartitioned(table: DeltaTableName, partition: DeltaPartitioning): boolean {
  return partition === 'date' || (partition === 'auto' && table === 'trades');
}

/**
 * The Delta table that `dir` is or lies in (a directory on the way up with a _delta_log), or null.
 * A store made there put its tables inside another table, whose VACUUM then deleted their files as
 * files the table does not name.
 */
function enclosingTable(dir: string): string | null {
  for (let d = resolve(dir); ; d = dirname(d)) {
    if (existsSync(join(d, '_delta_log'))) return d;
    if (dirname(d) === d) return null;
  }
}

/** The sinks of `delta:DIR`, one per table, in write order. */
export function createDeltaSinks(spec: string, logger: Logger, options: DeltaSinkOptions = {}): Sink[] {
  const dir = userPath(spec.slice('delta:'.length));
  if (!dir) throw new UsageError('--sink delta needs a directory: --sink delta:./coinstream-delta');
  refuseJoinedSinks(spec, dir, 'directory');
  // A file there would fail every table's first listing of its log (ENOTDIR), at exit 1.
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new UsageError(`--sink delta:${dir}: ${dir} is a file; give a directory (made if missing), e.g. --sink delta:./coinstream-delta`);
  const table = enclosingTable(dir);
  if (table) {
    throw new UsageError(
      `--sink delta:${dir}: ${table === resolve(dir) ? `${dir} is itself a Delta table` : `${dir} is inside the Delta table ${table}`} (it has a _delta_log); a coinstream store is a directory of its own tables: give one outside any table, e.g. --sink delta:./coinstream-delta`,
    );
  }
  const partition = options.partition ?? 'auto';
  const shared = new SharedWriter();
  const tables = WRITE_ORDER.filter((t) => t !== 'trades' || options.trades).map((t) => ({ def: DELTA_TABLES[t], partitioned: isPartitioned(t, partition) }));
  // Every table of the store is checked before the first one is made: a directory that holds another
  // application's table of one of these names is refused with nothing added to it (the tables open
  // one after another, and the ones before the foreign one were made, empty, before it was found).
  let checked: Promise<void> | null = null;
  const checkAll = () =>
    (checked ??= (async () => {
      const { DeltaTableLog } = await import('./table-log.js');
      for (const t of tables) await new DeltaTableLog(resolve(dir, t.def.name), logger).check(tableSchema(t.def, t.partitioned));
    })());
  return tables.map((t) => new DeltaTableSink(dir, t.def, t.partitioned, shared, logger, checkAll));
}

/** The columns and partitioning coinstream writes a table with. */
function tableSchema(def: DeltaTableDef, partitioned: boolean): { schemaString: string; partitionColumns: string[] } {
  return { schemaString: schemaString(def, partitioned), partitionColumns: partitioned ? ['date'] : [] };
}

export class DeltaTableSink implements Sink {
  readonly name: string;
  private log!: DeltaTableLog;
  private readonly tableDir: string;
  private files: ParquetWriter | null = null;
  /**
   * Per job, the watermark of the last batch this table committed: final windows ending at or before
   * it are in the table. (`process` writes one job per partition to the same table.)
   */
  private readonly writtenThrough = new Map<string, number>();

  constructor(
    dir: string,
    private readonly def: DeltaTableDef,
    private readonly partitioned: boolean,
    private readonly shared: SharedWriter,
    private readonly logger: Logger,
    /** Checks every table of the store (once for all of them), before this one is made. */
    private readonly checkAll: () => Promise<void> = async () => undefined,
  ) {
    this.name = `delta:${join(dir, def.name)}`;
    this.tableDir = resolve(dir, def.name);
  }

  async open(): Promise<void> {
    // Loaded only now: the log's reader brings DuckDB, which a run without a Delta sink never loads here.
    const { DeltaTableLog } = await import('./table-log.js');
    this.log = new DeltaTableLog(this.tableDir, this.logger);
    await this.checkAll();
    this.files = await this.shared.acquire();
    await this.log.open(tableSchema(this.def, this.partitioned));
  }

  /**
   * Appends the batch in one commit. A failure that is not already ours (a full disk while DuckDB
   * writes a Parquet file, a log that cannot be written) says which table and batch it was, as the
   * other stores do, so that the one line a failed run ends with names the store to look at.
   */
  async write(batch: OutputBatch): Promise<void> {
    try {
      await this.append(batch);
    } catch (err) {
      if (err instanceof CoinstreamError) throw err;
      throw new CoinstreamError('SINK_FAILED', `${this.name}: writing batch ${batch.batchId} failed: ${(err as Error).message}`, false, { cause: err });
    }
  }

  private async append(batch: OutputBatch): Promise<void> {
    const p = batch.progress;
    if (p && this.log.txnVersion(p.job) >= batch.batchId) {
      this.logger.info({ sink: this.name, batchId: batch.batchId }, `${this.name}: batch ${batch.batchId} is already in the table; not appending it again`);
      return;
    }
    if (p && p.expectBatchId !== undefined) this.checkFence(p.job, p.expectBatchId);
    // A batch without progress goes to a table ahead of the job (it skips what it holds): its windows
    // are at or before the watermark the table read back for the job.
    const through = p ? (this.writtenThrough.get(p.job) ?? -Infinity) : Math.max(-Infinity, ...this.writtenThrough.values());
    const rows = rowsOf(this.def, batch, through);
    // Nothing to append and nothing to remember: no commit.
    if (rows === null && !p) return;
    const adds = rows ? await this.files!.write(this.def, rows, this.tableDir, this.partitioned) : [];
    crashIfAsked('kill-before-commit', batch.batchId);
    const now = Date.now();
    const actions = [
      ...adds.map((add) => ({ add })),
      ...(p ? [{ txn: { appId: p.job, version: batch.batchId, lastUpdated: now } }] : []),
      {
        commitInfo: {
          timestamp: now,
          operation: 'STREAMING UPDATE',
          operationParameters: { outputMode: 'Append', queryId: p?.job ?? '', epochId: String(batch.batchId) },
          isBlindAppend: true,
          engineInfo: ENGINE_INFO,
          ...(p ? { coinstream: progressRecord(batch.batchId, p) } : {}),
        },
      },
    ];
    // After a lost race, the commits that won may be another owner's of this job.
    const fence = p?.expectBatchId !== undefined ? async () => (this.checkFence(p.job, p.expectBatchId!), true) : undefined;
    const version = await this.log.commit(actions, p ? { appId: p.job, version: batch.batchId } : undefined, this.files!, fence);
    if (version === null) {
      // Another writer committed this batch first: our files are not part of the table.
      await Promise.all(adds.map((a) => rm(join(this.tableDir, decodeRelativePath(a.path)), { force: true })));
      this.logger.info({ sink: this.name, batchId: batch.batchId }, `${this.name}: batch ${batch.batchId} was committed by another writer; not appending it again`);
    }
    crashIfAsked('kill-after-commit', batch.batchId);
    crashIfAsked(`kill-after-table:${this.def.name}`, batch.batchId);
    if (p) this.writtenThrough.set(p.job, Math.max(this.writtenThrough.get(p.job) ?? -Infinity, p.watermark));
  }

  /** FENCED when the table's txn of the job is not the batch this writer expects (another owner wrote). */
  private checkFence(job: string, expect: number): void {
    const v = this.log.txnVersion(job);
    const stored = v === -Infinity ? -1 : v;
    if (stored !== expect) throw fencedError(this.name, job, stored, expect);
  }

  async close(): Promise<void> {
    if (!this.files) return;
    this.files = null;
    await this.shared.release();
  }

  async readProgress(job: string): Promise<StoredProgress | null> {
    const progress = await this.log.readProgress(job);
    // A finished job's stored engine is the one before finishing (the pipeline goes on from it when
    // given a further file); the end of input wrote every window up to sealedThrough of it final. With
    // the engine's own watermark here, a table ahead on a finished job (a sink added, a crash between two
    // tables' commits of the last batch) appended those windows a second time.
    this.writtenThrough.set(job, progress === null ? -Infinity : progress.finished ? finishedThrough(progress) : progress.watermark);
    return progress;
  }

  /** The jobs with batches in the table: its txn actions (a job cleared by --fresh is at version -1). */
  jobs(): Promise<string[]> {
    return this.log.jobs();
  }

  /** `--fresh`: one commit that removes every file of the table and resets the job's txn. */
  async clearJob(job: string): Promise<void> {
    const snapshot = await this.log.snapshot();
    const now = Date.now();
    const actions = [
      ...snapshot.files.map((f) => ({ remove: { path: encodeDeltaPath(f.path), deletionTimestamp: now, dataChange: true, extendedFileMetadata: true, partitionValues: f.partitionValues, size: f.size } })),
      { txn: { appId: job, version: -1, lastUpdated: now } },
      { commitInfo: { timestamp: now, operation: 'DELETE', operationParameters: { predicate: '[]' }, engineInfo: ENGINE_INFO, coinstream: { job, cleared: true } } },
    ];
    await this.log.commit(actions, undefined, this.files ?? undefined);
    this.writtenThrough.delete(job);
  }
}

/** Where a finished job's windows were all written final: the seal point of its stored engine. */
function finishedThrough(progress: StoredProgress): number {
  const before = engineWatermark(progress);
  try {
    const snapshot = JSON.parse(progress.engineState) as EngineSnapshot;
    return Math.max(before, WindowEngine.restore(snapshot.config as EngineConfig, snapshot).sealPoint());
  } catch {
    return before; // not the layout this version writes: what the engine had made final, as before
  }
}

/** The watermark inside a stored engine snapshot (before a finish moved it to +infinity). */
function engineWatermark(progress: StoredProgress): number {
  try {
    const state = JSON.parse(progress.engineState) as { watermark?: unknown; finalizedThrough?: unknown };
    const w = typeof state.finalizedThrough === 'number' ? state.finalizedThrough : state.watermark;
    return typeof w === 'number' ? w : -Infinity;
  } catch {
    return -Infinity;
  }
}
