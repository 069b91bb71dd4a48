// Runs `node bin/coinstream.js ...` as a child process and waits for what it prints, never for time.
//
//   const run = spawnCoinstream(['run', '--source', `replay:${FILE}`, '--sink', 'console', '--no-dashboard']);
//   await run.waitFor('stderr', /pipeline started/);   // resolves on the 'data' event that completes the match
//   run.child.kill('SIGINT');
//   expect((await run.exit).code).toBe(0);
//   expect(run.stdout()).toMatch(/Batch: 0/);
//
// A wait's timeout is only a safety net: when it expires (or the process ends first) the wait rejects
// with everything the process printed so far. Call `killAll` in an afterEach/afterAll hook so that a
// failed test leaves no process behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { expect } from 'vitest';

export type Stream = 'stdout' | 'stderr';

export interface Spawned {
  child: ChildProcess;
  /** Everything printed on stdout so far. */
  stdout(): string;
  /** Everything printed on stderr so far (JSON log lines). */
  stderr(): string;
  /**
   * Resolves with the matched text as soon as the stream's output so far matches `pattern` (checked
   * now and on every 'data' event), or, given a function, with the whole output once it returns true
   * (to count or sum over lines). Rejects if the process ends first or after `timeoutMs` (safety net).
   */
  waitFor(stream: Stream, pattern: RegExp | ((output: string) => boolean), timeoutMs?: number): Promise<string>;
  /** Settles once the process has exited and its stdout and stderr are fully read ('close'). */
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const live = new Set<ChildProcess>();

/** SIGKILLs every process started by spawnCoinstream that is still running. */
export function killAll(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
}

/**
 * Starts `node bin/coinstream.js ...args` with `env` added to this process's environment. Logs are JSON
 * lines (COINSTREAM_LOG_FORMAT=json) unless `env` says otherwise. No dashboard unless the args name a
 * --port: test files run side by side, and would all reach for port 8080.
 */
export function spawnCoinstream(args: string[], env: Record<string, string> = {}): Spawned {
  const dashboard = args.includes('--port') ? {} : { COINSTREAM_NO_DASHBOARD: '1' };
  const child = spawn('node', ['bin/coinstream.js', ...args], { env: { ...process.env, COINSTREAM_LOG_FORMAT: 'json', ...dashboard, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const text: Record<Stream, string> = { stdout: '', stderr: '' };
  child.stdout!.on('data', (d) => (text.stdout += d));
  child.stderr!.on('data', (d) => (text.stderr += d));
  let closed: string | null = null;
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => {
      live.delete(child);
      closed = `exited with code ${code}${signal ? ` (signal ${signal})` : ''}`;
      resolve({ code, signal });
    }),
  );

  function waitFor(stream: Stream, pattern: RegExp | ((output: string) => boolean), timeoutMs = 30_000): Promise<string> {
    // A global or sticky regex keeps state between exec() calls: match with a plain copy.
    const regex = typeof pattern === 'function' ? null : new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ''));
    const match = (): string | null => {
      const out = text[stream];
      if (regex) return regex.exec(out)?.[0] ?? null;
      return (pattern as (output: string) => boolean)(out) ? out : null;
    };
    return new Promise((resolve, reject) => {
      const settle = (): boolean => {
        try {
          const hit = match();
          if (hit !== null) resolve(hit);
          else if (closed !== null) reject(failure(closed));
          else return false;
        } catch (err) {
          reject(err);
        }
        clearTimeout(timer);
        child[stream]!.off('data', settle);
        child.off('close', settle);
        return true;
      };
      const failure = (why: string) =>
        new Error(`coinstream ${args.join(' ')}: ${why} before ${stream} matched ${regex ?? pattern.toString()}\n--- stdout ---\n${text.stdout}\n--- stderr ---\n${text.stderr}`);
      const timer = setTimeout(() => {
        child[stream]!.off('data', settle);
        child.off('close', settle);
        reject(failure(`no match within ${timeoutMs} ms (safety net)`));
      }, timeoutMs);
      // These listeners run after the ones above: the chunk is already captured, `closed` already set.
      if (!settle()) {
        child[stream]!.on('data', settle);
        child.once('close', settle);
      }
    });
  }

  return { child, stdout: () => text.stdout, stderr: () => text.stderr, waitFor, exit };
}

/** A loopback port that nothing listens on (it was free a moment ago): connections to it are refused. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Trades in the complete `batch written` debug lines (COINSTREAM_LOG_LEVEL=debug) of a run's stderr
 * so far: what it has committed to its stores. A last, incomplete line is not counted.
 */
export function tradesWritten(stderr: string): number {
  let n = 0;
  const lines = stderr.split('\n');
  lines.pop();
  for (const line of lines) {
    if (!line.includes('"msg":"batch written"')) continue;
    n += (JSON.parse(line) as { trades: number }).trades;
  }
  return n;
}

/** Waits for the process to exit 0; otherwise fails with the tail of its stderr. */
export async function finished(run: Spawned): Promise<Spawned> {
  const { code, signal } = await run.exit;
  expect(code, `exited with ${code} (${signal})\n--- stderr (tail) ---\n${run.stderr().slice(-4000)}`).toBe(0);
  return run;
}

/** How many times `pattern` occurs in a process's output. */
export const count = (pattern: RegExp) => (out: string) => (out.match(new RegExp(pattern.source, 'g')) ?? []).length;

/** The `batch written` debug lines (COINSTREAM_LOG_LEVEL=debug): batches committed so far. */
export const batchesWritten = count(/"msg":"batch written"/);
