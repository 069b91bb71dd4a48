// Small file helpers of the Delta writer, in a module that loads no DuckDB.
import { open } from 'node:fs/promises';

/** A relative data file path as the log holds it: each segment URL-encoded (`=` kept, as Spark writes it). */
export function encodeDeltaPath(path: string): string {
  return path
    .split('/')
    .map((segment) => encodeURIComponent(segment).replace(/%3D/g, '='))
    .join('/');
}

/** Flushes a file to the disk: a commit must never name a file that a power loss could leave empty. */
export async function syncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The inverse of encodeDeltaPath for a relative path we wrote. */
export function decodeRelativePath(path: string): string {
  return path.split('/').map(decodeURIComponent).join('/');
}
