// Fault injection for the recovery tests: COINSTREAM_TEST_FAULT=kill-before-commit:N (or
// kill-after-commit:N) kills the whole process with SIGKILL when a store has written every row of
// batch N but not committed it (or has just committed it). An outside `kill -9` cannot aim that
// precisely. With several stores (or a Delta store's several tables) the first to reach the point dies.
// Delta only: kill-after-table:TABLE:N dies right after TABLE committed batch N (between two tables).
// DuckDB only: kill-creating-store:0 dies right after DuckDB opened (or made) the store file, before
// the store's tables are made.
const FAULT = /^(kill-before-commit|kill-after-commit|kill-creating-store|kill-after-table:[a-z_]+):(\d+)$/.exec(process.env.COINSTREAM_TEST_FAULT ?? '');

export function crashIfAsked(point: string, batchId: number): void {
  if (FAULT && FAULT[1] === point && Number(FAULT[2]) === batchId) process.kill(process.pid, 'SIGKILL');
}

/**
 * Tests only: COINSTREAM_TEST_FAULT=interrupt-after-trades:N sends this process SIGINT (a user's
 * Ctrl-C) once the written batches hold N trades or more. A test that waited for the log line and
 * sent the signal itself stopped the run wherever it had got to by then, which on a loaded machine
 * was past the point the test needed (test/recovery/resume.test.ts, case 1).
 */
const INTERRUPT_AFTER = Number(/^interrupt-after-trades:(\d+)$/.exec(process.env.COINSTREAM_TEST_FAULT ?? '')?.[1] ?? Infinity);
let interrupted = false;

export function interruptIfAsked(tradesWritten: number): void {
  if (!interrupted && tradesWritten >= INTERRUPT_AFTER) {
    interrupted = true;
    process.kill(process.pid, 'SIGINT');
  }
}
