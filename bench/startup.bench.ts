// npm run bench:startup [-- --rounds 15] [-- --baseline DIR]
//
// What a user pays before any work is done: whole processes, started cold, as a user starts them.
//   help    coinstream --help
//   replay  coinstream run --source replay:ONE-LINE-FILE --speed max --sink duckdb:NEW-FILE
// Variants, timed in the same rounds (their order alternates from round to round):
//   compiled   bin/coinstream.js: the JavaScript in dist/ (what `npm start` and `npx coinstream` run)
//   tsx        the same sources run through the tsx loader, as bin/ did before dist/ existed
//   baseline   (with --baseline DIR) another checkout's bin/coinstream.js, e.g. the code before a change
// Reported per variant: the median wall time and its range; per pair, the median of the round-by-round
// ratios with their range (a ratio from one round's pair, never best against best).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const ROUNDS = Number(arg('--rounds') ?? 15);
const baselineDir = arg('--baseline');
const root = resolve(new URL('..', import.meta.url).pathname);
const dir = mkdtempSync(join(tmpdir(), 'coinstream-startup-'));

const oneLine = join(dir, 'one.jsonl');
writeFileSync(oneLine, readFileSync(join(root, 'data/kraken-btcusd-2019-07-01.coincap.jsonl'), 'utf8').split('\n')[0] + '\n');
// The tsx variant: what bin/coinstream.js did before the build (register tsx, import the sources).
const tsxEntry = join(dir, 'tsx-entry.mjs');
writeFileSync(
  tsxEntry,
  `import { register } from ${JSON.stringify(join(root, 'node_modules/tsx/dist/esm/api/index.mjs'))};\n` +
    `register();\nconst { main } = await import(${JSON.stringify(join(root, 'src/cli/main.ts'))});\nprocess.exitCode = await main(process.argv.slice(2));\n`,
);

execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'ignore' });

type Variant = { name: string; argv: string[] };
const variants: Variant[] = [
  { name: 'compiled', argv: [join(root, 'bin/coinstream.js')] },
  { name: 'tsx', argv: [tsxEntry] },
];
if (baselineDir) variants.push({ name: 'baseline', argv: [join(resolve(baselineDir), 'bin/coinstream.js')] });

let store = 0;
const commands: Record<string, () => string[]> = {
  help: () => ['--help'],
  replay: () => ['run', '--source', `replay:${oneLine}`, '--speed', 'max', '--sink', `duckdb:${join(dir, `s${store++}.duckdb`)}`, '--no-dashboard'],
};

function time(v: Variant, args: string[]): number {
  const start = performance.now();
  const r = spawnSync('node', [...v.argv, ...args], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, COINSTREAM_LOG_LEVEL: 'warn' } });
  const ms = performance.now() - start;
  if (r.status !== 0) throw new Error(`${v.name} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const range = (xs: number[], digits: number) => `${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}`;

console.log(`startup: ${ROUNDS} paired rounds; ${cpus().length} x ${cpus()[0]?.model}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`);
for (const [command, args] of Object.entries(commands)) {
  for (const v of variants) time(v, args()); // warm the disk cache: every variant starts from the same state
  const ms: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? variants : [...variants].reverse();
    for (const v of order) ms[v.name].push(time(v, args()));
  }
  console.log(`\n${command}`);
  for (const v of variants) console.log(`  ${v.name.padEnd(9)} median ${median(ms[v.name]).toFixed(0)} ms (range ${range(ms[v.name], 0)} ms)`);
  for (const other of variants.slice(1)) {
    const ratios = ms.compiled.map((c, i) => ms[other.name][i] / c);
    console.log(`  ${other.name} / compiled: median ${median(ratios).toFixed(2)}x (range ${range(ratios, 2)}x)`);
  }
}
