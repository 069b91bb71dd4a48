#!/usr/bin/env node
// Entry point: the compiled JavaScript in dist/, which `npm install` builds (the prepare script) and
// `npm run build` rebuilds. No TypeScript loader at run time.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('coinstream: not built yet: run `npm run build` (npm install does it)\n');
  process.exit(1);
}
const args = process.argv.slice(2);
// First, before V8 compiles anything: see src/core/detach-early.ts.
const { detachOneBufferEarly } = await import(new URL('../dist/core/detach-early.js', import.meta.url).href);
detachOneBufferEarly();
// A Ctrl-C while a long-running command starts is a graceful stop, not a kill (src/cli/signals.ts).
if (['run', 'process', 'ingest', 'record', 'replay-server', 'dashboard'].includes(args[0])) {
  const { catchEarlySignals } = await import(new URL('../dist/cli/signals.js', import.meta.url).href);
  catchEarlySignals();
  if (process.env.COINSTREAM_TEST_FAULT === 'signal-at-start') process.kill(process.pid, 'SIGINT'); // for test/cli/hardening.test.ts
}
// `run` writes to DuckDB unless its sinks say otherwise: its worker starts loading DuckDB now, while the
// command line is parsed (src/sinks/duckdb/prestart.ts). A wrong guess costs a little CPU, nothing else.
if (args[0] === 'run' && !args.includes('--help') && !args.includes('-h') && runWritesDuckDB(args)) {
  const { prestartDuckDBWorker } = await import(new URL('../dist/sinks/duckdb/prestart.js', import.meta.url).href);
  prestartDuckDBWorker();
}
const { main } = await import(entry.href);
process.exitCode = await main(args);
exitIfStillRunning(5000);

/**
 * Every command has closed what it opened when main() returns, so the process ends by itself. If
 * something still holds it (a client library that came back after it was told to stop: kafkajs
 * rejoined the group after a broker outage, and `process --available-now` said "done" and then ran
 * for ever), it says so and exits with the command's code rather than hang a cron job.
 */
function exitIfStillRunning(graceMs) {
  if (process.env.COINSTREAM_TEST_FAULT === 'linger-after-command:0') setInterval(() => undefined, 60_000); // a stray handle, for test/cli/hardening.test.ts
  const guard = setTimeout(() => {
    // What holds it, for the report; stdin/stdout/stderr and timers are always listed, so left out.
    const held = process.getActiveResourcesInfo().filter((r) => !['Timeout', 'TTYWrap', 'PipeWrap'].includes(r));
    process.stderr.write(`coinstream: still running ${graceMs / 1000} s after the command ended (held by ${held.join(', ') || 'a timer'}); exiting now. This is a bug: please report it with the log.\n`);
    process.exit();
  }, graceMs);
  guard.unref();
}

/** Whether `run` gets a duckdb: sink: one named with --sink, else in COINSTREAM_SINK, else the default (DuckDB). */
function runWritesDuckDB(args) {
  const sinks = [];
  args.forEach((arg, i) => {
    if (arg === '--sink') sinks.push(args[i + 1] ?? '');
    else if (arg.startsWith('--sink=')) sinks.push(arg.slice('--sink='.length));
  });
  if (sinks.length === 0 && process.env.COINSTREAM_SINK) sinks.push(...process.env.COINSTREAM_SINK.trim().split(/\s+/));
  return sinks.length === 0 || sinks.some((s) => s.startsWith('duckdb:'));
}
