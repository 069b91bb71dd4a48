// Writing one Delta table's log (protocol: ../shared/data/delta/DELTA-PROTOCOL.md).
//
// A commit is the file _delta_log/<version, 20 digits>.json, created put-if-absent: it is written whole
// to _delta_log/.tmp/, flushed, then hard-linked to its name. link() fails if the name exists, so two
// writers never both get a version and a reader never sees half a commit. A writer that loses the
// race reads the commits it missed and tries the next version; if one of them already holds its
// transaction (txn appId = job, version >= batch id), the batch is in the table and is not appended
// again. Every 10th version gets a classic checkpoint and _last_checkpoint.
//
// What a store keeps with each batch (DESIGN.md, Recovery) goes in the commit's commitInfo under
// `coinstream`, in the same commit as the batch's rows and its txn action.
import { randomUUID } from 'node:crypto';
import { link, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { Serial } from '../../core/serial.js';
import { dirname, join, resolve } from 'node:path';
import { CoinstreamError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { StoredProgress } from '../contract.js';
import { commitName, listLog } from './log.js';
import { encodeDeltaPath, syncFile } from './files.js';
import type { ParquetWriter } from './parquet.js';
import { ENGINE_INFO, type ProgressRecord } from './commit-info.js';
import { readCommit, readDeltaLog, type DeltaSnapshot, type RawAction } from './reader.js';

/** Commits between checkpoints. */
export const CHECKPOINT_EVERY = 10;
/** Tombstones younger than this stay in checkpoints (delta.deletedFileRetentionDuration's default). */
const TOMBSTONE_RETENTION_MS = 7 * 24 * 3600 * 1000;
/** Lost races in a row before a commit gives up (another writer commits far faster than we can). */
const MAX_COMMIT_ATTEMPTS = 1000;

function fail(dir: string, message: string, cause?: unknown, retriable = false): CoinstreamError {
  return new CoinstreamError(retriable ? 'SINK_FAILED' : 'CONFIG', `Delta table ${dir}: ${message}`, retriable, cause === undefined ? undefined : { cause });
}

export interface TableSchema {
  schemaString: string;
  partitionColumns: string[];
}

export class DeltaTableLog {
  readonly logDir: string;
  /** The version the next commit takes (one past the newest we know of). */
  private nextVersion = 0;
  private readonly txns = new Map<string, number>();
  /**
   * This writer's commits and reads, one at a time. Two at once on one instance both advanced
   * nextVersion from the same listing, and a commit then took a version past one nobody had written:
   * a log with holes (0..18, 20, 22), which readers stop at. The test of 4 writers x 5 concurrent
   * commits found it in CI; a loop of it reproduced it in 1 of ~70 rounds.
   */
  private readonly serial = new Serial();

  constructor(
    readonly tableDir: string,
    private readonly logger: Logger,
  ) {
    this.logDir = join(tableDir, '_delta_log');
  }

  /**
   * Opens the table, creating it (version 0: protocol, metaData) when it does not exist. An existing
   * table must have the same columns and partitioning: CONFIG error otherwise.
   */
  async open(schema: TableSchema): Promise<void> {
    if (!(await this.exists())) {
      const createdTime = Date.now();
      const actions = [
        { protocol: { minReaderVersion: 1, minWriterVersion: 2 } },
        { metaData: { id: randomUUID(), format: { provider: 'parquet', options: {} }, schemaString: schema.schemaString, partitionColumns: schema.partitionColumns, configuration: {}, createdTime } },
        { commitInfo: { timestamp: createdTime, operation: 'CREATE TABLE', operationParameters: { partitionBy: JSON.stringify(schema.partitionColumns) }, engineInfo: ENGINE_INFO } },
      ];
      await makeDirectories(this.logDir, `Delta table ${this.tableDir}`);
      if (await this.tryCommit(0, actions)) {
        this.logger.info({ table: this.tableDir, partitionBy: schema.partitionColumns }, `created Delta table ${this.tableDir}`);
      }
    }
    const snapshot = await this.matching(schema);
    this.nextVersion = snapshot.version + 1;
    for (const [app, v] of snapshot.txns) this.txns.set(app, v);
  }

  /** Throws (CONFIG) if the table is there with other columns or partitioning than `schema`; makes nothing. */
  async check(schema: TableSchema): Promise<void> {
    if (await this.exists()) await this.matching(schema);
  }

  /** The table's snapshot, if it has `schema`'s columns and partitioning; else throws (CONFIG). */
  private async matching(schema: TableSchema): Promise<Awaited<ReturnType<typeof readDeltaLog>>> {
    const snapshot = await readDeltaLog(this.tableDir);
    const same = (a: string, b: string) => JSON.stringify(fieldsOf(a)) === JSON.stringify(fieldsOf(b));
    if (!same(snapshot.metaData.schemaString, schema.schemaString) || snapshot.metaData.partitionColumns.join(',') !== schema.partitionColumns.join(',')) {
      const had = fieldsOf(snapshot.metaData.schemaString).map((f) => f.name);
      throw fail(
        this.tableDir,
        `exists with other columns or partitioning (columns ${had.join(', ')}; partitioned by ${snapshot.metaData.partitionColumns.join(', ') || 'nothing'}) than coinstream writes (partitioned by ${schema.partitionColumns.join(', ') || 'nothing'}); write to another directory, or use the --delta-partition it was created with`,
      );
    }
    return snapshot;
  }

  /** The latest txn version of `appId`, or -Infinity. */
  txnVersion(appId: string): number {
    return this.txns.get(appId) ?? -Infinity;
  }

  /**
   * Commits `actions` as the next version. With `txn`, a batch some commit already holds (a txn of the
   * same appId at this version or later) is not committed again: returns null. Else the version.
   * `stillValid` is asked after each lost race, once the commits that won are read: false gives up
   * (returns null), for a commit that depends on what they may have changed (optimize's removes).
   */
  commit(actions: RawAction[], txn?: { appId: string; version: number }, files?: ParquetWriter, stillValid?: () => Promise<boolean>): Promise<number | null> {
    return this.serial.run(() => this.commitNow(actions, txn, files, stillValid));
  }

  private async commitNow(actions: RawAction[], txn?: { appId: string; version: number }, files?: ParquetWriter, stillValid?: () => Promise<boolean>): Promise<number | null> {
    for (let attempt = 0; attempt < MAX_COMMIT_ATTEMPTS; attempt++) {
      if (txn && this.txnVersion(txn.appId) >= txn.version) return null;
      const version = this.nextVersion;
      if (await this.tryCommit(version, actions)) {
        this.nextVersion = Math.max(this.nextVersion, version + 1);
        this.learnTxns(actions);
        if (version % CHECKPOINT_EVERY === 0 && files) await this.checkpoint(version, files);
        return version;
      }
      // Another writer took this version: learn what it committed, then try the next one.
      await this.catchUp();
      if (stillValid && !(await stillValid())) return null;
    }
    throw fail(this.tableDir, `gave up committing after ${MAX_COMMIT_ATTEMPTS} versions were taken by other writers`, undefined, true);
  }

  /**
   * The job's progress as of its newest commit that holds some, read from the newest commit back.
   * Null for a job never written here (or cleared with --fresh).
   */
  readProgress(job: string): Promise<StoredProgress | null> {
    return this.serial.run(() => this.readProgressNow(job));
  }

  private async readProgressNow(job: string): Promise<StoredProgress | null> {
    await this.catchUp();
    for (let v = this.nextVersion - 1; v >= 0; v--) {
      let actions: RawAction[];
      try {
        actions = await readCommit(this.logDir, v, this.tableDir);
      } catch {
        break; // cleaned up below a checkpoint: nothing older to find
      }
      for (const action of actions) {
        const info = action.commitInfo as { timestamp?: number; coinstream?: ProgressRecord } | undefined;
        const record = info?.coinstream;
        if (!record || record.job !== job) continue;
        if (record.cleared) return null;
        if (record.batchId === undefined || record.engineState === undefined) continue;
        return {
          job,
          batchId: record.batchId,
          positions: record.positions ?? {},
          settings: record.settings ?? '',
          engineState: record.engineState,
          watermark: typeof record.watermark === 'string' ? Number(record.watermark) : (record.watermark ?? -Infinity),
          finished: record.finished === true,
          updatedAt: info?.timestamp ?? 0,
        };
      }
    }
    if (this.txnVersion(job) >= 0) {
      throw fail(this.tableDir, `holds batches of job "${job}" (txn version ${this.txnVersion(job)}) but no progress to resume them from; start over with --fresh`);
    }
    return null;
  }

  /** The jobs (txn appIds) with batches in the table as it is now; --fresh leaves a job at version -1. */
  jobs(): Promise<string[]> {
    return this.serial.run(async () => {
      await this.catchUp();
      return [...this.txns].filter(([, version]) => version >= 0).map(([appId]) => appId).sort();
    });
  }

  /** The table's current snapshot (every file it holds). */
  snapshot(): Promise<DeltaSnapshot> {
    return readDeltaLog(this.tableDir);
  }

  /** Reads the commits made since we last looked (by other writers). Called only inside this.serial. */
  private async catchUp(): Promise<void> {
    const { commits } = await listLog(this.logDir);
    let v = this.nextVersion;
    while (commits.has(v)) {
      this.learnTxns(await readCommit(this.logDir, v, this.tableDir));
      v++;
    }
    this.nextVersion = Math.max(this.nextVersion, v);
  }


  private learnTxns(actions: RawAction[]): void {
    for (const action of actions) {
      const txn = action.txn as { appId?: string; version?: number } | undefined;
      if (txn && typeof txn.appId === 'string' && typeof txn.version === 'number') this.txns.set(txn.appId, txn.version);
    }
  }

  private async exists(): Promise<boolean> {
    try {
      return (await listLog(this.logDir)).commits.size > 0;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw fail(this.tableDir, `cannot list _delta_log (${(err as Error).message})`, err, true);
    }
  }

  /** Creates commit `version` if nobody has: false when it exists already. */
  private async tryCommit(version: number, actions: RawAction[]): Promise<boolean> {
    const tmpDir = join(this.logDir, '.tmp');
    const tmp = join(tmpDir, `${randomUUID()}.json`);
    try {
      await mkdir(tmpDir, { recursive: true });
      await writeFile(tmp, actions.map((a) => JSON.stringify(a)).join('\n') + '\n');
      await syncFile(tmp);
      await link(tmp, join(this.logDir, commitName(version)));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw fail(this.tableDir, `writing commit ${version} failed: ${(err as Error).message}`, err, true);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** A classic checkpoint of `version` and _last_checkpoint; a failure is logged, not fatal (it is only a shortcut). */
  private async checkpoint(version: number, files: ParquetWriter): Promise<void> {
    try {
      const s = await readDeltaLog(this.tableDir, { version });
      const now = Date.now();
      const m = s.metaData;
      const actions: object[] = [
        { protocol: { minReaderVersion: s.protocol.minReaderVersion, minWriterVersion: s.protocol.minWriterVersion } },
        { metaData: { id: m.id, name: m.name ?? null, description: m.description ?? null, format: m.format, schemaString: m.schemaString, partitionColumns: m.partitionColumns, configuration: m.configuration, createdTime: m.createdTime ?? null } },
        ...[...s.txns].map(([appId, v]) => ({ txn: { appId, version: v } })),
        ...s.files.map((f) => ({ add: { path: encodeDeltaPath(f.path), partitionValues: f.partitionValues, size: f.size, modificationTime: f.modificationTime, dataChange: false, stats: f.stats ? JSON.stringify(f.stats) : null, tags: f.tags ?? null } })),
        ...s.tombstones
          .filter((r) => (r.deletionTimestamp ?? now) > now - TOMBSTONE_RETENTION_MS)
          .map((r) => ({ remove: { path: encodeDeltaPath(r.path), deletionTimestamp: r.deletionTimestamp ?? null, dataChange: false, extendedFileMetadata: false, partitionValues: r.partitionValues ?? null, size: r.size ?? null } })),
      ];
      await files.writeCheckpoint(actions, join(this.logDir, `${String(version).padStart(20, '0')}.checkpoint.parquet`));
      const tmp = join(this.logDir, '.tmp', `${randomUUID()}.last_checkpoint`);
      await writeFile(tmp, JSON.stringify({ version, size: actions.length }) + '\n');
      await rename(tmp, join(this.logDir, '_last_checkpoint'));
    } catch (err) {
      this.logger.warn({ table: this.tableDir, version, err: (err as Error).message }, `Delta table ${this.tableDir}: writing the checkpoint of version ${version} failed (${(err as Error).message}); readers replay the commits instead`);
    }
  }
}

function fieldsOf(schemaString: string): { name: string; type: unknown }[] {
  try {
    return (JSON.parse(schemaString) as { fields: { name: string; type: unknown }[] }).fields.map((f) => ({ name: f.name, type: f.type }));
  } catch {
    return [];
  }
}

/**
 * `mkdir -p`, one directory at a time from the nearest one that exists, so that a failure names the
 * directory and its real cause. Node's recursive mkdir said ENOENT for a parent on a read-only file
 * system (EROFS), and under /proc it never returned (a run with `--sink delta:/proc/x` spun for ever).
 */
async function makeDirectories(path: string, what: string): Promise<void> {
  const missing: string[] = [];
  for (let dir = resolve(path); !existsSync(dir); dir = dirname(dir)) missing.unshift(dir);
  for (const dir of missing) {
    try {
      await mkdir(dir);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EEXIST') continue; // another writer made it meanwhile
      throw new CoinstreamError('SINK_FAILED', `${what}: cannot make the directory ${dir}: ${e.message}`, false, { cause: err });
    }
  }
}
