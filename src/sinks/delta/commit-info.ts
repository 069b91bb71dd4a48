// What coinstream puts in a Delta commit's commitInfo: the job's progress (DESIGN.md, Recovery), in
// the same commit as the batch's rows and txn. A module of its own that loads no DuckDB.
import type { BatchProgress } from '../contract.js';

export const ENGINE_INFO = 'coinstream';

/** The progress a commit carries in commitInfo.coinstream. */
export interface ProgressRecord {
  job: string;
  batchId?: number;
  positions?: BatchProgress['positions'];
  settings?: string;
  engineState?: string;
  /** A number, or "Infinity" / "-Infinity" (JSON has no infinities). */
  watermark?: number | string;
  finished?: boolean;
  /** `--fresh` cleared the job: no progress. */
  cleared?: boolean;
}

export function progressRecord(batchId: number, p: BatchProgress): ProgressRecord {
  return { job: p.job, batchId, positions: p.positions, settings: p.settings, engineState: p.engineState, watermark: Number.isFinite(p.watermark) ? p.watermark : String(p.watermark), finished: p.finished };
}
