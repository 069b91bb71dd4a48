// Paths inside specs (replay:PATH, duckdb:PATH, delta:DIR). The shell expands a ~ only at the start of
// a word, so in `--sink duckdb:~/trades.duckdb` the ~ reached coinstream as is, and the run failed on a
// directory named "~" that nobody meant. A leading ~ is the home directory here, as it is in a shell.
import { homedir } from 'node:os';
import { join } from 'node:path';

/** `~` and `~/...` at the start of a spec's path as the home directory; any other path unchanged. */
export function userPath(path: string): string {
  if (path === '~') return homedir();
  if (path.startsWith('~/')) return join(homedir(), path.slice(2));
  return path;
}
