// `coinstream optimize delta:DIR [--vacuum]`: compacts the small files of a Delta store's tables and,
// with --vacuum, deletes the data files no version within the retention needs. One summary line per
// table on the log.
import { parseDuration } from '../core/duration.js';
import { UsageError } from '../core/errors.js';
import { userPath } from '../core/paths.js';
import type { Logger } from '../core/logger.js';
import { parseByteSize } from '../core/size.js';

export interface OptimizeFlags {
  vacuum?: boolean;
  retention: string;
  targetSize: string;
  dryRun?: boolean;
}

/** Bytes for people: 1.5 MiB. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)}s`;

export async function optimizeCommand(spec: string, flags: OptimizeFlags, deps: { logger: Logger }): Promise<void> {
  const { logger } = deps;
  if (!spec.startsWith('delta:') || spec.length === 'delta:'.length) throw new UsageError(`optimize needs a Delta store: delta:DIR (got "${spec}")`);
  const dir = userPath(spec.slice('delta:'.length));
  const targetSize = parseByteSize(flags.targetSize, '--target-size');
  const retentionMs = parseDuration(flags.retention, '--retention');
  const { DEFAULT_RETENTION_MS, findDeltaTables, optimizeTable, vacuumTable } = await import('../sinks/delta/optimize.js');
  const tables = await findDeltaTables(dir);
  if (flags.vacuum && retentionMs < DEFAULT_RETENTION_MS) {
    logger.warn(
      { retention: flags.retention },
      `--retention ${flags.retention} is shorter than the default 7d: versions older than that can no longer be read (time travel), and a reader still on an older snapshot may lose its files (files no commit names yet are kept at least an hour, for a writer about to commit them)`,
    );
  }
  const dry = flags.dryRun ? ' (dry run: nothing changed)' : '';

  const { ParquetWriter } = await import('../sinks/delta/parquet.js');
  const files = await ParquetWriter.open();
  const failures: string[] = [];
  try {
    for (const table of tables) {
      try {
        const r = await optimizeTable(table, files, { targetSize, dryRun: flags.dryRun, logger });
        const what = r.conflict ? 'not optimized (conflict with a concurrent writer)' : r.removed === 0 ? 'nothing to compact' : `${r.removed} files -> ${r.added}${r.version !== null ? `, version ${r.version}` : ''}`;
        logger.info(
          { table: table.dir, filesBefore: r.filesBefore, filesAfter: r.filesAfter, bytesBefore: r.bytesBefore, bytesAfter: r.bytesAfter, removed: r.removed, added: r.added, version: r.version, durationMs: Math.round(r.durationMs), dryRun: flags.dryRun === true },
          // A dry run writes no file, so the size after is not known: it said "117.0 KiB -> 117.0 KiB".
          `optimize ${table.name}: ${r.filesBefore} -> ${r.filesAfter} files, ${flags.dryRun ? `${formatBytes(r.bytesBefore)} now (the size after is known once written)` : `${formatBytes(r.bytesBefore)} -> ${formatBytes(r.bytesAfter)}`} (${what}) in ${seconds(r.durationMs)}${dry}`,
        );
        if (flags.vacuum) {
          const v = await vacuumTable(table, { retentionMs, dryRun: flags.dryRun });
          for (const path of flags.dryRun ? v.deleted : []) logger.info({ table: table.dir, path }, `vacuum ${table.name}: would delete ${path}`);
          logger.info(
            { table: table.dir, deleted: v.deleted.length, bytesFreed: v.bytesFreed, expiredTombstones: v.expiredTombstones, orphans: v.orphans, keptRecent: v.keptRecent, activeFiles: v.activeFiles, durationMs: Math.round(v.durationMs), dryRun: flags.dryRun === true },
            `vacuum ${table.name}: ${flags.dryRun ? 'would delete' : 'deleted'} ${v.deleted.length} files (${v.expiredTombstones} removed from the table, ${v.orphans} never committed), ${formatBytes(v.bytesFreed)} freed; kept ${v.activeFiles} active and ${v.keptRecent} younger than ${flags.retention} in ${seconds(v.durationMs)}${dry}`,
          );
        }
      } catch (err) {
        // A table that cannot be optimized does not stop the others; a bad table (CONFIG) is still the user's to fix.
        if (tables.length === 1) throw err;
        failures.push(`${table.name}: ${(err as Error).message}`);
        logger.error({ table: table.dir, err: (err as Error).message }, `optimize ${table.name} failed: ${(err as Error).message}`);
      }
    }
  } finally {
    files.close();
  }
  if (failures.length > 0) throw new Error(`optimize failed for ${failures.length} of ${tables.length} tables: ${failures.join('; ')}`);
}
