// The command line (DESIGN.md, "Command line"). Exit codes: 0 done, 1 runtime failure, 2 bad usage.
//
// Each command's module is imported when the command runs, not before: `coinstream --help` loads
// neither DuckDB nor the websocket clients.
import { Argument, Command, CommanderError, Option } from 'commander';
import { systemClock } from '../core/clock.js';
import { CoinstreamError, UsageError, isUsageLike } from '../core/errors.js';
import { createLogger, LOG_FORMATS, type Logger } from '../core/logger.js';
import { SOURCE_SPEC_HELP } from '../sources/contract.js';
import { SINK_SPEC_HELP } from '../sinks/contract.js';
import { kafkaOptions } from '../kafka/client.js';
import { settleEarlyOpens } from '../sinks/duckdb/early-opens.js';
import { dropPrestartedWorker } from '../sinks/duckdb/prestart.js';

const COMMANDS = ['run', 'ingest', 'topics', 'query', 'replay-server', 'record', 'optimize', 'process', 'dashboard'];

/** A flag that may be given more than once. Values are kept whole (a path may hold spaces). */
const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/**
 * The values of a repeatable flag. From its environment variable they come as one string, where
 * several specs are separated by whitespace (`COINSTREAM_SOURCE="replay:a.jsonl replay:b.jsonl"`).
 */
function listFlag(cmd: Command, name: string): string[] | undefined {
  const values = cmd.getOptionValue(name) as string[] | undefined;
  if (values === undefined || cmd.getOptionValueSource(name) !== 'env') return values;
  return values.flatMap((v) => v.split(/\s+/).filter(Boolean));
}

/** The dashboard flags of `run` and `process`. */
function dashboardOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--port <port>', 'dashboard port (0: any free port)').default('8080').env('COINSTREAM_PORT'))
    .addOption(new Option('--host <host>', 'dashboard address (other than 127.0.0.1: reachable from other machines)').default('127.0.0.1').env('COINSTREAM_HOST'))
    .addOption(new Option('--no-dashboard', 'do not serve the dashboard (nor /metrics)').env('COINSTREAM_NO_DASHBOARD'));
}

/** Whether --port kept its default (a taken default port only costs the dashboard, with a warning). */
const portIsDefault = (cmd: Command) => cmd.getOptionValueSource('port') === 'default';

/** The store specs (read-store.ts), written out here so that --help loads no store module. */
const STORE_SPEC_HELP_TEXT = 'duckdb:PATH | mysql://USER[:PASS]@HOST:PORT/DB | postgres://USER[:PASS]@HOST:PORT/DB | delta:DIR';

function engineOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--window <duration>', 'window size').default('1m').env('COINSTREAM_WINDOW'))
    .addOption(new Option('--slide <duration>', 'window slide (default: the window size, i.e. tumbling)').env('COINSTREAM_SLIDE'))
    .addOption(new Option('--window-offset <duration>', 'shift window starts from the epoch').default('0').env('COINSTREAM_WINDOW_OFFSET'))
    .addOption(new Option('--watermark <duration>', 'how late a trade may arrive: watermark = max event time - this').default('5m').env('COINSTREAM_WATERMARK'))
    .addOption(new Option('--trigger <duration>', 'how often changed windows are written').default('1s').env('COINSTREAM_TRIGGER'))
    .addOption(new Option('--trend-span <duration>', 'span of the price trend').default('6m').env('COINSTREAM_TREND_SPAN'))
    .addOption(new Option('--fresh', "clear the job's rows and progress from the stores and start over (a run otherwise resumes where the stores are)"));
}

/** --max-line; `longer` says what happens to a longer line in this command. */
function maxLineOption(cmd: Command, longer = 'is rejected as malformed (kept with the reason)'): Command {
  return cmd.addOption(new Option('--max-line <size>', `longest replay line or websocket frame; a longer one ${longer} and reading goes on`).default('1MiB').env('COINSTREAM_MAX_LINE'));
}

/** Every command logs the same way; the logger is made when the command runs, so a bad setting is a usage error. */
function withLogFormat(cmd: Command): Command {
  return cmd.addOption(
    new Option('--log-format <format>', 'logs on stderr: pretty (one line per event), json (JSON lines), or auto: pretty on a terminal').choices(LOG_FORMATS).env('COINSTREAM_LOG_FORMAT'),
  );
}

function loggerFor(cmd: Command): Logger {
  return createLogger({ format: cmd.getOptionValue('logFormat') as string | undefined });
}

export function buildProgram(): Command {
  const program = new Command('coinstream')
    .description('Real-time trade analytics for cryptocurrencies: live trades -> event-time windows -> stores, dashboard and console.')
    .version('0.1.0')
    .showSuggestionAfterError(true);

  const run = program
    .command('run')
    .description('Read sources, aggregate in windows, write to sinks (the main job, embedded log).')
    .addOption(new Option('--source <spec>', `where trades come from, repeatable: ${SOURCE_SPEC_HELP}`).argParser(collect).env('COINSTREAM_SOURCE'))
    .addOption(new Option('--sink <spec>', `where results go, repeatable: ${SINK_SPEC_HELP} (default: duckdb:./coinstream.duckdb and console)`).argParser(collect).env('COINSTREAM_SINK'))
    .addOption(new Option('--speed <max|N>', 'replay pace: max, or N times real time').default('1').env('COINSTREAM_SPEED'))
    .addOption(new Option('--batches <n>', 'stop after N batches (triggers that wrote something) of this run; a resumed job writes N more').env('COINSTREAM_BATCHES'))

    .addOption(new Option('--delta-trades', 'with --sink delta:DIR, also archive the accepted trades in DIR/trades').env('COINSTREAM_DELTA_TRADES'))
    .addOption(new Option('--delta-partition <how>', 'Delta tables partitioned by date: auto (the trades archive only), date (every table), none').default('auto').env('COINSTREAM_DELTA_PARTITION'))
    .addOption(new Option('--archive <what>', 'trades: the stores keep every accepted trade (DuckDB trade_log, SQL trades, Delta DIR/trades with --delta-trades); none: only windows, trends, rejects').choices(['trades', 'none']).default('trades').env('COINSTREAM_ARCHIVE'));
  withLogFormat(maxLineOption(engineOptions(dashboardOptions(run)))).action(async (opts, cmd: Command) => {
    const { runCommand } = await import('./run.js');
    await runCommand({ ...opts, source: listFlag(cmd, 'source'), sink: listFlag(cmd, 'sink'), portIsDefault: portIsDefault(cmd) }, { clock: systemClock, logger: loggerFor(cmd) });
  });

  const ingest = program
    .command('ingest')
    .description('Read sources and send every trade to a Kafka topic (rejected input to its dead-letter topic).')
    .addOption(new Option('--source <spec>', `where trades come from, repeatable: ${SOURCE_SPEC_HELP}`).argParser(collect).env('COINSTREAM_SOURCE'))
    .addOption(new Option('--topic <name>', 'the trade topic').default('coincap_trade').env('COINSTREAM_TOPIC'))
    .addOption(new Option('--dead-letter-topic <name>', 'where rejected input goes (default: TOPIC.rejected)').env('COINSTREAM_DEAD_LETTER_TOPIC'))
    .addOption(new Option('--idempotent', "use Kafka's idempotent producer where the cluster grants one").default(true))
    .addOption(new Option('--no-idempotent', 'use a plain producer').env('COINSTREAM_NO_IDEMPOTENT'))
    .addOption(new Option('--speed <max|N>', 'replay pace: max, or N times real time').default('1').env('COINSTREAM_SPEED'));
  withLogFormat(maxLineOption(kafkaOptions(ingest))).action(async (opts, cmd: Command) => {
    const { ingestCommand } = await import('./ingest.js');
    await ingestCommand({ ...opts, source: listFlag(cmd, 'source') }, { clock: systemClock, logger: loggerFor(cmd) });
  });

  const topics = program
    .command('topics')
    .description('Create or describe the trade topic and its dead-letter topic.')
    .addArgument(new Argument('<action>', 'create: create the topics where missing (an existing one is fine); describe: partitions, leaders, replicas, offsets').choices(['create', 'describe']))
    .addOption(new Option('--topic <name>', 'the trade topic').default('coincap_trade').env('COINSTREAM_TOPIC'))
    .addOption(new Option('--dead-letter-topic <name>', 'its dead-letter topic (default: TOPIC.rejected)').env('COINSTREAM_DEAD_LETTER_TOPIC'))
    .addOption(new Option('--partitions <n>', 'create: partitions of each topic').default('3').env('COINSTREAM_PARTITIONS'))
    .addOption(new Option('--replication-factor <n>', 'create: copies of each partition').default('1').env('COINSTREAM_REPLICATION_FACTOR'))
    .addOption(new Option('--retention <duration>', "create: how long messages are kept (default: the cluster's)").env('COINSTREAM_RETENTION'));
  withLogFormat(kafkaOptions(topics)).action(async (action: string, opts, cmd: Command) => {
    const { topicsCommand } = await import('./topics.js');
    await topicsCommand(action, opts, { logger: loggerFor(cmd) });
  });

  withLogFormat(
    program
      .command('query')
      .description('Print the latest windows and trends from a store.')
      .addOption(new Option('--store <spec>', 'the store to read').default('duckdb:./coinstream.duckdb').env('COINSTREAM_STORE'))
      .addOption(new Option('--asset <id>', 'only this asset (CoinCap id, e.g. bitcoin)').env('COINSTREAM_ASSET'))
      .addOption(new Option('--last <duration>', 'event time covered, back from the newest window end').default('6m').env('COINSTREAM_LAST')),
  ).action(async (opts, cmd: Command) => {
    loggerFor(cmd); // only to refuse a bad COINSTREAM_LOG_LEVEL or format like every command
    const { queryCommand } = await import('./query.js');
    await queryCommand(opts);
  });

  withLogFormat(
    maxLineOption(
      program
        .command('replay-server')
        .description('Serve a recorded JSONL(.gz) file as a CoinCap v2 trades websocket, so the live path runs offline.')
        .argument('<file>', 'JSONL or JSONL.gz of trade messages')
        .addOption(new Option('--port <port>', 'port to listen on (0: any free port)').default('0').env('COINSTREAM_PORT'))
        .addOption(new Option('--speed <max|N>', 'pace: max, or N times real time').default('1').env('COINSTREAM_SPEED')),
      'is skipped with a warning (the server has no rejected_trades)',
    ),
  ).action(async (file: string, opts, cmd: Command) => {
    const { replayServerCommand } = await import('./feeds.js');
    await replayServerCommand(file, opts, { clock: systemClock, logger: loggerFor(cmd) });
  });

  withLogFormat(
    maxLineOption(
      program
        .command('record')
        .description('Write what live sources receive to JSONL(.gz), one trade message per line.')
        .addOption(new Option('--source <spec>', `where trades come from, repeatable: ${SOURCE_SPEC_HELP}`).argParser(collect).env('COINSTREAM_SOURCE'))
        .addOption(new Option('--out <file>', 'FILE.jsonl or FILE.jsonl.gz').makeOptionMandatory().env('COINSTREAM_OUT'))
        .addOption(new Option('--rotate-mb <n>', 'start FILE.1.jsonl(.gz), FILE.2… past this many MB').default('256').env('COINSTREAM_ROTATE_MB')),
    ),
  ).action(async (opts, cmd: Command) => {
    const { recordCommand } = await import('./feeds.js');
    await recordCommand({ ...opts, source: listFlag(cmd, 'source') }, { clock: systemClock, logger: loggerFor(cmd) });
  });

  const processCmd = kafkaOptions(
    program
      .command('process')
      .description('Consume the trade topic as a consumer group: one engine per partition, results to the sinks, exactly-once by the progress in the stores.')
      .addOption(new Option('--topic <name>', 'the trade topic').default('coincap_trade').env('COINSTREAM_TOPIC'))
      .addOption(new Option('--dead-letter-topic <name>', "ingest's rejections, kept in rejected_trades (default: TOPIC.rejected)").env('COINSTREAM_DEAD_LETTER_TOPIC'))
      .addOption(new Option('--no-dead-letter', 'do not read the dead-letter topic').env('COINSTREAM_NO_DEAD_LETTER'))
      .addOption(new Option('--group <id>', 'the consumer group; its partitions\' progress is kept per group in the stores').default('coinstream').env('COINSTREAM_GROUP'))
      .addOption(new Option('--sink <spec>', `where results go, repeatable: ${SINK_SPEC_HELP} (default: duckdb:./coinstream.duckdb and console)`).argParser(collect).env('COINSTREAM_SINK'))
      .addOption(new Option('--starting-offsets <where>', 'where a partition the stores know nothing of starts: earliest or latest').default('earliest').env('COINSTREAM_STARTING_OFFSETS'))
      .addOption(new Option('--max-offsets-per-trigger <n>', 'at most N records per partition per trigger interval').env('COINSTREAM_MAX_OFFSETS_PER_TRIGGER'))
      .addOption(new Option('--available-now', 'process what the topics hold when it starts, write everything final, exit 0').env('COINSTREAM_AVAILABLE_NOW'))
      .addOption(new Option('--delta-trades', 'with --sink delta:DIR, also archive the accepted trades in DIR/trades').env('COINSTREAM_DELTA_TRADES'))
      .addOption(new Option('--archive <what>', 'trades: the stores keep every accepted trade (DuckDB trade_log, SQL trades, Delta DIR/trades with --delta-trades); none: only windows, trends, rejects').choices(['trades', 'none']).default('trades').env('COINSTREAM_ARCHIVE')),
  );
  withLogFormat(engineOptions(dashboardOptions(processCmd))).action(async (opts, cmd: Command) => {
    const { processCommand } = await import('./process.js');
    await processCommand({ ...opts, sink: listFlag(cmd, 'sink'), portIsDefault: portIsDefault(cmd) }, { clock: systemClock, logger: loggerFor(cmd) });
  });

  withLogFormat(
    program
      .command('dashboard')
      .description('Serve the web dashboard of a store (history, and updates every 2 s), until Ctrl-C.')
      .addOption(new Option('--store <spec>', `the store to show: ${STORE_SPEC_HELP_TEXT}`).default('duckdb:./coinstream.duckdb').env('COINSTREAM_STORE'))
      .addOption(new Option('--port <port>', 'port to listen on (0: any free port)').default('8080').env('COINSTREAM_PORT'))
      .addOption(new Option('--host <host>', 'address to listen on (other than 127.0.0.1: reachable from other machines)').default('127.0.0.1').env('COINSTREAM_HOST')),
  ).action(async (opts, cmd: Command) => {
    const { dashboardCommand } = await import('./dashboard.js');
    await dashboardCommand({ ...opts, dashboard: true }, { logger: loggerFor(cmd) });
  });

  withLogFormat(
    program
      .command('optimize')
      .description('Compact the small files of a Delta store (delta:DIR, or one table directory); with --vacuum, delete files no longer needed.')
      .argument('<store>', 'delta:DIR')
      .addOption(new Option('--target-size <size>', 'compacted file size, by input bytes; files this big are left alone').default('128MiB').env('COINSTREAM_TARGET_SIZE'))
      .addOption(new Option('--vacuum', 'then delete data files the table no longer uses that are older than --retention'))
      .addOption(new Option('--retention <duration>', 'with --vacuum: keep removed files this long (time travel, slow readers)').default('7d'))
      .addOption(new Option('--dry-run', 'only report what would be compacted and deleted').env('COINSTREAM_DRY_RUN')),
  ).action(async (store: string, opts, cmd: Command) => {
    const { optimizeCommand } = await import('./optimize.js');
    await optimizeCommand(store, opts, { logger: loggerFor(cmd) });
  });

  return program;
}

/**
 * The variables of on/off flags (commander takes any value, "0" and "false" included, for on), found
 * in the program itself: a list kept by hand missed COINSTREAM_SSL, and COINSTREAM_SSL=0 turned TLS on.
 */
export function envSwitches(program: Command): string[] {
  const names = new Set<string>();
  for (const cmd of [program, ...program.commands]) {
    for (const option of cmd.options) if (option.envVar && !option.required && !option.optional) names.add(option.envVar);
  }
  return [...names].sort();
}

/**
 * Flags that read no variable, on purpose: set once in a service's environment, --fresh would clear
 * the job and --vacuum delete files at every start (and optimize's --retention would share
 * COINSTREAM_RETENTION with topics' --retention, a quite different setting). --idempotent is the
 * default; its variable is COINSTREAM_NO_IDEMPOTENT.
 */
export const FLAGS_WITHOUT_VARIABLE = ['--fresh', '--vacuum', '--retention', '--idempotent'];

/**
 * Reads the on/off variables as a person means them: 1/true/yes/on sets the flag, 0/false/no/off (or
 * empty) leaves it unset. COINSTREAM_NO_DASHBOARD=0 turned the dashboard off. Anything else is bad
 * usage: the message to print, or null.
 */
export function readEnvSwitches(env: NodeJS.ProcessEnv, switches: string[]): string | null {
  for (const name of switches) {
    const value = env[name];
    if (value === undefined || /^(1|true|yes|on)$/i.test(value.trim())) continue;
    if (/^(0|false|no|off|)$/i.test(value.trim())) delete env[name];
    else return `${name}="${value}" must be 1, true, yes or on to set it, or 0, false, no or off (or unset) to leave it`;
  }
  return null;
}

/** Parses and runs; returns the exit code instead of exiting, so stdout can drain. */
export async function main(argv: string[]): Promise<number> {
  // `coinstream query | head -1`: once the reader is gone there is nobody left to tell; without a
  // listener the EPIPE would be an uncaught exception with a stack. (The console sink stops itself.)
  // Any other failure (a full disk: `> /dev/full`) loses output a script relies on: the command does
  // its work, and then exits 1 saying so (it exited 0).
  let stdoutFailure: NodeJS.ErrnoException | null = null;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') stdoutFailure ??= err;
  });
  const program = buildProgram();
  const badSwitch = readEnvSwitches(process.env, envSwitches(program));
  if (badSwitch) {
    process.stderr.write(`coinstream: ${badSwitch}\n`);
    return 2;
  }
  if (argv.length === 0) {
    // No command: what a user typing `coinstream` wants is the list of commands.
    process.stderr.write(program.helpInformation());
    return 2;
  }
  let usageLine = '';
  for (const cmd of [program, ...program.commands]) {
    cmd.exitOverride();
    // One line: commander's own may run on to a second ("(Did you mean query?)"), kept on the same line.
    cmd.configureOutput({ writeErr: (text) => (usageLine ||= text.trim().split('\n').map((l) => l.trim()).join(' ')) });
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    await new Promise<void>((resolve) => process.stdout.write('', () => resolve())); // what is still queued, written or failed
    if (stdoutFailure === null) return 0;
    const failure = stdoutFailure as NodeJS.ErrnoException;
    process.stderr.write(`coinstream: failed: could not write to stdout (${failure.code ?? failure.message}): what it printed is incomplete [OUTPUT_FAILED]\n`);
    return 1;
  } catch (err) {
    return reportFailure(err, argv, usageLine);
  } finally {
    // A command that failed before opening its DuckDB store: let the open it started end cleanly.
    await settleEarlyOpens();
    // A DuckDB worker started for `run` that no store took (no DuckDB sink, or a failure first).
    await dropPrestartedWorker();
  }
}

/** One line on stderr for every failure; the exit code says whose it was (2 usage, 1 runtime). */
function reportFailure(err: unknown, argv: string[], usageLine: string): number {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || (err.code === 'commander.help' && err.exitCode === 0)) return 0;
    if (err.code === 'commander.help') {
      // `coinstream help bogus`: commander's answer is the whole help, on stderr, exit 1; it printed nothing and exited 0.
      const asked = argv.slice(argv.indexOf('help') + 1).find((a) => !a.startsWith('-')) ?? '';
      process.stderr.write(`coinstream: no command "${asked}". Run \`coinstream --help\` to see the commands.\n`);
      return 2;
    }
    // commander's own messages may end with a full stop ("Allowed choices are create, describe."):
    // one stop before the hint, not two.
    const line = (usageLine || err.message).replace(/^error: /, '').replace(/\.$/, '');
    process.stderr.write(`coinstream: ${line}. Run \`coinstream ${guessCommand(argv)}--help\` to see the options.\n`);
    return 2;
  }
  if (err instanceof UsageError || isUsageLike(err)) {
    process.stderr.write(`coinstream: ${oneLine((err as Error).message)}\n`);
    return 2;
  }
  const message = err instanceof Error ? err.message : String(err);
  const code = err instanceof CoinstreamError ? ` [${err.code}]` : '';
  process.stderr.write(`coinstream: failed: ${oneLine(message)}${code}\n`);
  // The stack helps a developer, not a user: on request only.
  if (process.env.COINSTREAM_LOG_LEVEL === 'debug' || process.env.COINSTREAM_LOG_LEVEL === 'trace') {
    process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
  }
  return 1;
}

/** Error messages from libraries may span lines (DuckDB adds context): the exit line stays one line. */
function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}

function guessCommand(argv: string[]): string {
  const first = argv.find((a) => !a.startsWith('-'));
  return first && COMMANDS.includes(first) ? `${first} ` : '';
}
