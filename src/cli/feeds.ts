// `coinstream replay-server` and `coinstream record`.
import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Clock } from '../core/clock.js';
import { CoinstreamError, UsageError } from '../core/errors.js';
import { userPath } from '../core/paths.js';
import { parseByteSize } from '../core/size.js';
import type { Logger } from '../core/logger.js';
import { recordSources } from '../sources/feeds/recorder.js';
import { startReplayServer, type ReplayServer } from '../sources/feeds/replay-server.js';
import { DEFAULT_LIVE_SOURCES, parseSourceSpecs, parseSpeed } from '../sources/spec.js';
import { parsePort } from './run.js';
import { shutdownSignal } from './signals.js';

export async function replayServerCommand(file: string, flags: { port: string; speed: string; maxLine: string }, deps: { clock: Clock; logger: Logger }): Promise<void> {
  if (!existsSync(file)) throw new UsageError(`replay file not found: ${file} (give a JSONL or JSONL.gz file of trade messages)`);
  if (!statSync(file).isFile()) throw new UsageError(`${file} is not a file (give a JSONL or JSONL.gz file of trade messages)`);
  const port = parsePort(flags.port);
  const speed = parseSpeed(flags.speed);
  const maxLineBytes = parseByteSize(flags.maxLine, '--max-line');
  let server: ReplayServer;
  try {
    server = await startReplayServer({ file, port, speed, maxLineBytes, logger: deps.logger, clock: deps.clock });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    throw new CoinstreamError('PORT_IN_USE', `port ${port} is already in use on 127.0.0.1; choose another --port (0 picks a free one)`, false, { cause: err });
  }
  // The one line a script waits for: where to connect.
  process.stdout.write(`replay-server listening on ${server.url} (connect with --source coincap@${server.url})\n`);
  const shutdown = shutdownSignal(deps.logger, 'closing the replay server');
  try {
    await new Promise<void>((resolve) => shutdown.signal.addEventListener('abort', () => resolve(), { once: true }));
  } finally {
    shutdown.dispose();
    await server.close();
  }
}

export async function recordCommand(flags: { source?: string[]; out: string; rotateMb: string; maxLine: string }, deps: { clock: Clock; logger: Logger }): Promise<void> {
  const rotateMb = Number(flags.rotateMb);
  if (!(rotateMb > 0)) throw new UsageError(`--rotate-mb "${flags.rotateMb}" must be a number of megabytes > 0`);
  if (!/\.jsonl(\.gz)?$/.test(flags.out)) throw new UsageError(`--out ${flags.out}: name the file *.jsonl or *.jsonl.gz`);
  // `--out=~/rec.jsonl` (one word, so the shell leaves the ~) means the home directory, as in specs.
  const out = userPath(flags.out);
  const dir = dirname(resolve(out));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`--out ${flags.out}: the directory ${dir} does not exist; create it first`);
  const maxLineBytes = parseByteSize(flags.maxLine, '--max-line');
  const specs = flags.source && flags.source.length > 0 ? flags.source : DEFAULT_LIVE_SOURCES;
  const sources = await parseSourceSpecs(specs, { clock: deps.clock, logger: deps.logger, maxLineBytes });
  const shutdown = shutdownSignal(deps.logger, 'closing the recording');
  try {
    await recordSources(sources, { out, rotateBytes: rotateMb * 2 ** 20, signal: shutdown.signal, logger: deps.logger });
  } finally {
    shutdown.dispose();
  }
}
