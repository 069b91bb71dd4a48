// The files of a _delta_log directory: commits, checkpoints and _last_checkpoint.

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

export const COMMIT = /^(\d{20})\.json$/;
const CLASSIC_CHECKPOINT = /^(\d{20})\.checkpoint\.parquet$/;
const MULTIPART_CHECKPOINT = /^(\d{20})\.checkpoint\.(\d{10})\.(\d{10})\.parquet$/;

/** A complete checkpoint: one classic file, or every part of a multi-part one. */
export interface CheckpointFiles {
  version: number;
  files: string[]; // names inside _delta_log
}

export interface LogListing {
  commits: Set<number>;
  /** Complete checkpoints by version (multi-part checkpoints with missing parts are left out). */
  checkpoints: Map<number, CheckpointFiles>;
}

export function commitName(version: number): string {
  return `${String(version).padStart(20, '0')}.json`;
}

/** Lists _delta_log (not its subfolders: `.tmp/`, `_staged_commits/`, `_sidecars/` are not part of the log). */
export async function listLog(logDir: string): Promise<LogListing> {
  const entries = await readdir(logDir, { withFileTypes: true });
  const commits = new Set<number>();
  const checkpoints = new Map<number, CheckpointFiles>();
  const parts = new Map<string, { version: number; total: number; names: Map<number, string> }>();
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const name = entry.name;
    let m = COMMIT.exec(name);
    if (m) {
      commits.add(Number(m[1]));
      continue;
    }
    m = CLASSIC_CHECKPOINT.exec(name);
    if (m) {
      checkpoints.set(Number(m[1]), { version: Number(m[1]), files: [name] });
      continue;
    }
    m = MULTIPART_CHECKPOINT.exec(name);
    if (m) {
      const key = `${m[1]}/${m[3]}`;
      const group = parts.get(key) ?? { version: Number(m[1]), total: Number(m[3]), names: new Map() };
      group.names.set(Number(m[2]), name);
      parts.set(key, group);
    }
  }
  for (const group of parts.values()) {
    if (checkpoints.has(group.version)) continue; // a classic checkpoint of the same version is as good
    const names: string[] = [];
    for (let i = 1; i <= group.total; i++) {
      const n = group.names.get(i);
      if (n === undefined) break;
      names.push(n);
    }
    if (names.length === group.total) checkpoints.set(group.version, { version: group.version, files: names });
  }
  return { commits, checkpoints };
}

/** `_delta_log/_last_checkpoint`, or undefined when absent or unreadable (it is only a hint). */
export async function readLastCheckpoint(logDir: string): Promise<{ version: number; parts?: number } | undefined> {
  try {
    const parsed = JSON.parse(await readFile(join(logDir, '_last_checkpoint'), 'utf8')) as { version?: unknown; parts?: unknown };
    if (typeof parsed.version !== 'number' || !Number.isInteger(parsed.version) || parsed.version < 0) return undefined;
    return { version: parsed.version, parts: typeof parsed.parts === 'number' ? parsed.parts : undefined };
  } catch {
    return undefined;
  }
}
