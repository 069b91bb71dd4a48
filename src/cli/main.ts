// The command line (DESIGN.md, "Command line"). Exit codes: 0 done, 1 runtime failure, 2 bad usage.
import { Command, CommanderError, Option } from 'commander';
import { systemClock } from '../core/clock.js';
import { CoinstreamError, UsageError, isUsageLike } from '../core/errors.js';
import { createLogger } from '../core/logger.js';
import { runCommand } from './run.js';
import { queryCommand } from './query.js';
import { recordCommand, replayServerCommand } from './feeds.js';
import { SOURCE_SPEC_HELP } from '../sources/spec.js';
import { SINK_SPEC_HELP } from '../sinks/spec.js';

/** Flags that may be given more than once, and read space-separated lists from their variable. */
const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), ...value.split(/\s+/).filter(Boolean)];

function engineOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--window <duration>', 'window size').default('1m').env('COINSTREAM_WINDOW'))
    .addOption(new Option('--slide <duration>', 'window slide (default: the window size, i.e. tumbling)').env('COINSTREAM_SLIDE'))
    .addOption(new Option('--window-offset <duration>', 'shift window starts from the epoch').default('0').env('COINSTREAM_WINDOW_OFFSET'))
    .addOption(new Option('--watermark <duration>', 'how late a trade may arrive: watermark = max event time - this').default('5m').env('COINSTREAM_WATERMARK'))
    .addOption(new Option('--trigger <duration>', 'how often changed windows are written').default('1s').env('COINSTREAM_TRIGGER'))
    .addOption(new Option('--trend-span <duration>', 'span of the price trend').default('6m').env('COINSTREAM_TREND_SPAN'));
}

export function buildProgram(): Command {
  const program = new Command('coinstream')
    .description('Real-time trade analytics for cryptocurrencies: live trades -> event-time windows -> stores, dashboard and console.')
    .version('0.1.0')
    .showSuggestionAfterError(true);

  engineOptions(
    program
      .command('run')
      .description('Read sources, aggregate in windows, write to sinks (the main job, embedded log).')
      .addOption(new Option('--source <spec>', `where trades come from, repeatable: ${SOURCE_SPEC_HELP}`).argParser(collect).env('COINSTREAM_SOURCE'))
      .addOption(new Option('--sink <spec>', `where results go, repeatable: ${SINK_SPEC_HELP} (default: duckdb:./coinstream.duckdb and console)`).argParser(collect).env('COINSTREAM_SINK'))
      .addOption(new Option('--speed <max|N>', 'replay pace: max, or N times real time').default('1').env('COINSTREAM_SPEED'))
      .addOption(new Option('--batches <n>', 'stop after N batches (triggers that wrote something)').env('COINSTREAM_BATCHES'))
      .addOption(new Option('--port <port>', 'dashboard port').default('8080').env('COINSTREAM_PORT'))
      .addOption(new Option('--no-dashboard', 'do not serve the dashboard')),
  ).action(async (opts) => runCommand(opts, { clock: systemClock, logger: createLogger() }));

  program
    .command('query')
    .description('Print the latest windows and trends from a store.')
    .addOption(new Option('--store <spec>', 'the store to read').default('duckdb:./coinstream.duckdb').env('COINSTREAM_STORE'))
    .addOption(new Option('--asset <id>', 'only this asset (CoinCap id, e.g. bitcoin)').env('COINSTREAM_ASSET'))
    .addOption(new Option('--last <duration>', 'event time covered, back from the newest window end').default('6m').env('COINSTREAM_LAST'))
    .action(async (opts) => queryCommand(opts));

  program
    .command('replay-server')
    .description('Serve a recorded JSONL(.gz) file as a CoinCap v2 trades websocket, so the live path runs offline.')
    .argument('<file>', 'JSONL or JSONL.gz of trade messages')
    .addOption(new Option('--port <port>', 'port to listen on (0: any free port)').default('0').env('COINSTREAM_PORT'))
    .addOption(new Option('--speed <max|N>', 'pace: max, or N times real time').default('1').env('COINSTREAM_SPEED'))
    .action(async (file: string, opts) => replayServerCommand(file, opts, { clock: systemClock, logger: createLogger() }));

  program
    .command('record')
    .description('Write what live sources receive to JSONL(.gz), one trade message per line.')
    .addOption(new Option('--source <spec>', `where trades come from, repeatable: ${SOURCE_SPEC_HELP}`).argParser(collect).env('COINSTREAM_SOURCE'))
    .addOption(new Option('--out <file>', 'FILE.jsonl or FILE.jsonl.gz').makeOptionMandatory().env('COINSTREAM_OUT'))
    .addOption(new Option('--rotate-mb <n>', 'start FILE.1.jsonl(.gz), FILE.2… past this many MB').default('256').env('COINSTREAM_ROTATE_MB'))
    .action(async (opts) => recordCommand(opts, { clock: systemClock, logger: createLogger() }));

  return program;
}

/** Parses and runs; returns the exit code instead of exiting, so stdout can drain. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  let usageLine = '';
  program.exitOverride();
  for (const cmd of [program, ...program.commands]) {
    cmd.exitOverride();
    cmd.configureOutput({ writeErr: (text) => (usageLine ||= text.trim().split('\n')[0]) });
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      const line = (usageLine || err.message).replace(/^error: /, '');
      process.stderr.write(`coinstream: ${line}. Run \`coinstream ${guessCommand(argv)}--help\` to see the options.\n`);
      return 2;
    }
    if (err instanceof UsageError || isUsageLike(err)) {
      process.stderr.write(`coinstream: ${(err as Error).message}\n`);
      return 2;
    }
    const message = err instanceof CoinstreamError ? `${err.message} [${err.code}]` : (err as Error)?.stack ?? String(err);
    process.stderr.write(`coinstream: failed: ${message}\n`);
    return 1;
  }
}

function guessCommand(argv: string[]): string {
  const first = argv.find((a) => !a.startsWith('-'));
  return first && ['run', 'query', 'replay-server', 'record'].includes(first) ? `${first} ` : '';
}
