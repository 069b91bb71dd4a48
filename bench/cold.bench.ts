// npm run bench:cold [-- --trades N[,N2...]] [-- --rounds R[,R2...]] [-- --baseline DIR]
//
// What a user pays, whole processes started cold, every figure from this one run:
//   a) cli    node bin/coinstream.js run --source replay:FILE --speed max --sink duckdb:NEW-FILE --no-dashboard
//   b) parse  a fresh `node -e` that streams FILE and JSON.parses every line (the floor a JS program pays)
//   a') the same as a) with --archive none (windows, trends, rejections and progress; no trades table)
//   c) duckdb a fresh node process with @duckdb/node-api (default threads) into a NEW-FILE store:
//             CREATE TABLE trades AS SELECT * FROM read_json(FILE, ...), then the per-asset 1-minute
//             aggregates into a table (what a user with a file would run instead)
//   a0) with --baseline DIR: a) as another checkout (built) runs it, e.g. the code before a change
// Each round runs them in a random order (paired rounds). Per path: median wall time (spawn to exit)
// and range, median peak RSS (/usr/bin/time %M, else VmHWM sampled from /proc). Ratios a/b and a/c are
// the median of the per-round ratios, with their range (never best against best).
// After the last round the CLI's store is checked against path c's aggregates, not only counted.
//
// Input: the bundled real Kraken hour, repeated with its timestamps shifted hour by hour; within each
// hour trade k is relabelled as asset k % 4 (bitcoin, ethereum, solana, cardano, prices scaled), so four
// assets trade side by side, as in a live stream.
import { DuckDBInstance } from '@duckdb/node-api';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { writeKrakenHours } from './input.js';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
/** Sizes and rounds per size: `--trades 1000000,10000000 --rounds 5,3` (the last rounds figure repeats). */
const SIZES = (arg('--trades') ?? '1000000').split(',').map(Number);
const ROUNDS_PER_SIZE = (arg('--rounds') ?? '5').split(',').map(Number);
if (!SIZES.every((n) => n > 0) || !ROUNDS_PER_SIZE.every((r) => r > 0)) throw new Error('--trades and --rounds take positive numbers, comma-separated');
const root = resolve(new URL('..', import.meta.url).pathname);
const dir = mkdtempSync(join(tmpdir(), 'coinstream-cold-'));
let file = join(dir, 'trades.jsonl');
const bin = join(root, 'bin/coinstream.js');
const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
/** Another checkout whose CLI runs as path a0 (built: its dist/ is what its bin runs). */
const baselineDir = arg('--baseline') ? resolve(arg('--baseline')!) : undefined;
if (baselineDir && !existsSync(join(baselineDir, 'dist/cli/main.js'))) throw new Error(`--baseline ${baselineDir}: no dist/cli/main.js there (run npm run build in it)`);

const ASSETS: { base: string; divisor: number; digits: number }[] = [
  { base: 'bitcoin', divisor: 1, digits: 1 },
  { base: 'ethereum', divisor: 20, digits: 2 },
  { base: 'solana', divisor: 400, digits: 3 },
  { base: 'cardano', divisor: 40_000, digits: 6 },
];

/** Within each hour, trade k trades as asset k % 4, its prices scaled to that asset's level. */
function makeInput(path: string, n: number): Promise<void> {
  return writeKrakenHours(path, n, (t, _rep, k) => {
    const a = ASSETS[k % ASSETS.length];
    const price = Number((t.price / a.divisor).toFixed(a.digits));
    return { ...t, base: a.base, price, priceUsd: price };
  });
}

// b) The floor: stream the file in 1 MiB chunks, split on newlines, JSON.parse each line, count.
const PARSE_SCRIPT = `
const fs = require('node:fs');
let rest = '', n = 0, volume = 0;
const s = fs.createReadStream(process.argv[1], { encoding: 'utf8', highWaterMark: 1 << 20 });
s.on('data', (chunk) => {
  const text = rest + chunk;
  let from = 0;
  for (let nl = text.indexOf('\\n'); nl !== -1; nl = text.indexOf('\\n', from)) {
    if (nl > from) { volume += JSON.parse(text.slice(from, nl)).volume; n++; }
    from = nl + 1;
  }
  rest = text.slice(from);
});
s.on('end', () => {
  if (rest) { volume += JSON.parse(rest).volume; n++; }
  console.log(JSON.stringify({ parsed: n, volume }));
});
`;

// c) DuckDB's own batch load + aggregation, into a store file, default threads.
const DUCKDB_SCRIPT = `
import { DuckDBInstance } from '@duckdb/node-api';
const [file, store] = process.argv.slice(1);
const instance = await DuckDBInstance.create(store);
const conn = await instance.connect();
const q = (s) => "'" + s.replaceAll("'", "''") + "'";
await conn.run(\`CREATE TABLE trades AS SELECT * FROM read_json(\${q(file)}, format = 'newline_delimited',
  columns = {exchange: 'VARCHAR', base: 'VARCHAR', quote: 'VARCHAR', direction: 'VARCHAR', price: 'DOUBLE',
             volume: 'DOUBLE', timestamp: 'BIGINT', priceUsd: 'DOUBLE'})\`);
await conn.run(\`CREATE TABLE windows AS
  SELECT base AS asset, epoch_ms(timestamp // 60000 * 60000) AS window_start,
    count(*) AS trades, sum(volume) AS total_volume, sum(volume * priceUsd) AS total_amount,
    avg(priceUsd) AS average_price, sum(volume * priceUsd) / sum(volume) AS vwap,
    arg_min(priceUsd, timestamp) AS open, max(priceUsd) AS high, min(priceUsd) AS low,
    arg_max(priceUsd, timestamp) AS close,
    coalesce(sum(volume) FILTER (WHERE direction = 'buy'), 0) AS buy_volume,
    coalesce(sum(volume) FILTER (WHERE direction = 'sell'), 0) AS sell_volume
  FROM trades GROUP BY ALL\`);
const [[trades, windows]] = (await conn.runAndReadAll('SELECT (SELECT count(*) FROM trades)::DOUBLE, (SELECT count(*) FROM windows)::DOUBLE')).getRows();
conn.closeSync();
instance.closeSync();
console.log(JSON.stringify({ trades, windows }));
`;

type Path = 'cli' | 'parse' | 'duckdb' | 'noarchive' | 'baseline';
const PATHS: Path[] = ['cli', 'parse', 'duckdb', 'noarchive', ...(baselineDir ? (['baseline'] as const) : [])];
const LABEL: Record<Path, string> = {
  cli: 'a) coinstream run -> DuckDB (CLI)',
  parse: 'b) stream + JSON.parse every line',
  duckdb: 'c) DuckDB read_json + aggregates',
  noarchive: "a') the same, --archive none",
  baseline: 'a0) a) as the --baseline checkout',
};

const ORDER_LETTER: Record<Path, string> = { cli: 'c', parse: 'p', duckdb: 'd', noarchive: 'n', baseline: '0' };

function command(path: Path, input: string, store: string): string[] {
  switch (path) {
    case 'cli':
      return ['node', bin, 'run', '--source', `replay:${input}`, '--speed', 'max', '--sink', `duckdb:${store}`, '--no-dashboard'];
    case 'noarchive':
      // Everything but the trades archive (windows, trends, rejections, progress): what a user who needs no archive pays.
      return ['node', bin, 'run', '--source', `replay:${input}`, '--speed', 'max', '--sink', `duckdb:${store}`, '--no-dashboard', '--archive', 'none'];
    case 'baseline':
      return ['node', join(baselineDir!, 'bin/coinstream.js'), 'run', '--source', `replay:${input}`, '--speed', 'max', '--sink', `duckdb:${store}`, '--no-dashboard'];
    case 'parse':
      return ['node', '-e', PARSE_SCRIPT, input];
    case 'duckdb':
      return ['node', '--input-type=module', '-e', DUCKDB_SCRIPT, input, store];
  }
}

/** Runs one whole process; wall time from spawn to exit, peak RSS of the process (KiB). */
function readFileSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** The resident set of a process and of its children (the node process under /usr/bin/time), KiB. */
function rssTreeKiB(pid: number): number {
  try {
    const own = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    return own + children.reduce((sum, c) => sum + rssTreeKiB(c), 0);
  } catch {
    return 0; // exited between samples
  }
}

async function measure(argv: string[], curve?: { at: number; kib: number }[]): Promise<{ ms: number; rssKiB: number; cpuMs: number; out: string; err: string }> {
  const rssFile = join(dir, 'rss.txt');
  rmSync(rssFile, { force: true });
  const full = TIME ? [TIME, '-f', '%M %U %S', '-o', rssFile, ...argv] : argv;
  const start = performance.now();
  const child = spawn(full[0], full.slice(1), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  // The RSS curve, sampled every 50 ms while it runs (only where asked: it costs the sampler a little CPU).
  const sampler = curve
    ? setInterval(() => {
        // Under /usr/bin/time the program is its child: once that has exited, what is left is not the program.
        const program = TIME ? Number(readFileSafe(`/proc/${child.pid}/task/${child.pid}/children`).trim().split(/\s+/)[0] || 0) : child.pid!;
        if (program > 0) curve.push({ at: performance.now() - start, kib: rssTreeKiB(program) });
      }, 50)
    : undefined;
  let hwm = 0;
  const poll = TIME
    ? undefined
    : setInterval(() => {
        try {
          const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
          if (m) hwm = Math.max(hwm, Number(m[1]));
        } catch {
          // exited between polls
        }
      }, 10);
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  const ms = performance.now() - start;
  if (poll) clearInterval(poll);
  if (sampler) clearInterval(sampler);
  if (code !== 0) throw new Error(`${argv.join(' ').slice(0, 200)} exited ${code}: ${err.slice(-2000)}`);
  // /usr/bin/time: peak RSS (KiB), user and system CPU seconds of every thread of the process.
  const [rssKiB, user, sys] = TIME ? readFileSync(rssFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number) : [hwm, NaN, NaN];
  return { ms, rssKiB, cpuMs: (user + sys) * 1000, out, err };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const range = (xs: number[], f: (x: number) => string) => `${f(Math.min(...xs))}-${f(Math.max(...xs))}`;
const sec = (ms: number) => (ms / 1000).toFixed(2);
const fmt = (x: number) => Math.round(x).toLocaleString('en-US');
function shuffle<T>(xs: T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

const benchStart = performance.now();
console.log(`cold bench ${new Date().toISOString()}`);
const pressure = () => {
  try {
    return ', CPU pressure ' + /avg10=([\d.]+) avg60=([\d.]+)/.exec(readFileSync('/proc/pressure/cpu', 'utf8'))!.slice(1).map((x) => `${x}%`).join('/') + ' (10 s/60 s)';
  } catch {
    return '';
  }
};
const load = () => loadavg().map((x) => x.toFixed(1)).join(' ') + pressure();
console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; load average ${load()}`);
execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'ignore' });
let failed = false;
for (const [k, N] of SIZES.entries()) {
  const ROUNDS = ROUNDS_PER_SIZE[Math.min(k, ROUNDS_PER_SIZE.length - 1)];
  file = join(dir, `trades-${N}.jsonl`);
  console.log(`\n=== ${fmt(N)} trades ===`);
  await makeInput(file, N);
  console.log(`input: ${fmt(N)} trades of ${ASSETS.length} assets, ${(statSync(file).size / 2 ** 20).toFixed(1)} MiB JSONL; ${ROUNDS} rounds, order random per round; RSS by ${TIME ? '/usr/bin/time %M' : 'VmHWM polling'}`);

  // Warm the disk cache (node, node_modules, dist) with a one-line input, untimed: every path then starts from the same state.
  const warm = join(dir, 'warm.jsonl');
  // The first line only (the whole file may be larger than a string can be).
  const head = Buffer.alloc(4096);
  const fd = openSync(file, 'r');
  readSync(fd, head, 0, head.length, 0);
  closeSync(fd);
  writeFileSync(warm, head.toString('utf8').split('\n', 1)[0] + '\n');
  for (const p of PATHS) await measure(command(p, warm, join(dir, `warm-${N}-${p}.duckdb`)));

  const ms: Record<Path, number[]> = { cli: [], parse: [], duckdb: [], noarchive: [], baseline: [] };
  const rss: Record<Path, number[]> = { cli: [], parse: [], duckdb: [], noarchive: [], baseline: [] };
  const cpu: Record<Path, number[]> = { cli: [], parse: [], duckdb: [], noarchive: [], baseline: [] };
  const cliStore = (r: number) => join(dir, `cli-${N}-${r}.duckdb`);
  const duckStore = (r: number) => join(dir, `duck-${N}-${r}.duckdb`);
  const noArchiveStore = (r: number) => join(dir, `noarchive-${N}-${r}.duckdb`);
  const baselineStore = (r: number) => join(dir, `baseline-${N}-${r}.duckdb`);
  const rows: string[] = [];
  /** The last CLI round's RSS over time. */
  const rssCurve: { at: number; kib: number }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = shuffle(PATHS);
    for (const p of order) {
      const store = p === 'cli' ? cliStore(r) : p === 'noarchive' ? noArchiveStore(r) : p === 'baseline' ? baselineStore(r) : duckStore(r);
      const curve = p === 'cli' && r === ROUNDS - 1 ? rssCurve : undefined;
      const m = await measure(command(p, file, store), curve);
      if (p === 'cli' || p === 'noarchive' || p === 'baseline') {
        // The summary line: {"reason":"end-of-input",...,"accepted":N,...,"msg":"done: ..."}
        const done = /"accepted":(\d+)[^\n]*"msg":"done/.exec(m.out + m.err);
        if (!done || Number(done[1]) !== N) {
          writeFileSync('/tmp/coinstream-cold-cli-failure.log', m.out + m.err);
          throw new Error(`CLI round ${r + 1}: accepted ${done?.[1]}, expected ${N} (its output: /tmp/coinstream-cold-cli-failure.log)`);
        }
      } else if (p === 'parse') {
        if (JSON.parse(m.out).parsed !== N) throw new Error(`parse round ${r + 1}: ${m.out}`);
      } else if (JSON.parse(m.out).trades !== N) throw new Error(`duckdb round ${r + 1}: ${m.out}`);
      ms[p].push(m.ms);
      rss[p].push(m.rssKiB / 1024);
      cpu[p].push(m.cpuMs);
    }
    const baselineColumns = baselineDir ? `   ${sec(ms.baseline[r]).padStart(6)} ${(ms.cli[r] / ms.baseline[r]).toFixed(2).padStart(6)}` : '';
    rows.push(`${String(r + 1).padStart(5)}  ${order.map((p) => ORDER_LETTER[p]).join('').padEnd(5)}  ${sec(ms.cli[r]).padStart(6)} ${sec(ms.parse[r]).padStart(6)} ${sec(ms.duckdb[r]).padStart(6)} ${sec(ms.noarchive[r]).padStart(6)}    ${(ms.cli[r] / ms.parse[r]).toFixed(2).padStart(5)} ${(ms.cli[r] / ms.duckdb[r]).toFixed(2).padStart(5)} ${(ms.noarchive[r] / ms.parse[r]).toFixed(2).padStart(5)} ${(ms.noarchive[r] / ms.duckdb[r]).toFixed(2).padStart(5)}${baselineColumns}`);
    for (const s of r < ROUNDS - 1 ? [cliStore(r), duckStore(r), noArchiveStore(r), baselineStore(r)] : [noArchiveStore(r), baselineStore(r)]) for (const f of [s, `${s}.wal`]) rmSync(f, { force: true });
  }

  console.log(`\nround  order   a (s)  b (s)  c (s)  a' (s)   a/b   a/c  a'/b  a'/c${baselineDir ? '  a0 (s)   a/a0' : ''}   (order: c=cli, p=parse, d=duckdb, n=--archive none${baselineDir ? ', 0=baseline' : ''})`);
  for (const row of rows) console.log(row);
  console.log('\npath                                   wall median (range)        peak RSS median (range)   CPU median (all threads)');
  for (const p of PATHS) {
    console.log(`${LABEL[p].padEnd(38)} ${sec(median(ms[p]))} s (${range(ms[p], sec)} s)`.padEnd(66) + ` ${`${median(rss[p]).toFixed(0)} MiB (${range(rss[p], (x) => x.toFixed(0))})`.padEnd(25)} ${TIME ? `${sec(median(cpu[p]))} s` : 'n/a'}`);
  }
  const ab = ms.cli.map((a, i) => a / ms.parse[i]);
  const ac = ms.cli.map((a, i) => a / ms.duckdb[i]);
  const nb = ms.noarchive.map((a, i) => a / ms.parse[i]);
  const nc = ms.noarchive.map((a, i) => a / ms.duckdb[i]);
  const speed = (xs: number[]) => `speed ${(1 / median(xs)).toFixed(2)}x`;
  console.log(`\nCLI time / JSON.parse time   median ${median(ab).toFixed(2)}x (range ${range(ab, (x) => x.toFixed(2))}x)   = ${speed(ab)} of the floor (goal >= 1.0x)`);
  console.log(`CLI time / DuckDB batch time median ${median(ac).toFixed(2)}x (range ${range(ac, (x) => x.toFixed(2))}x)   = ${speed(ac)} of DuckDB (goal >= 1.0x)`);
  console.log(`with --archive none: / JSON.parse median ${median(nb).toFixed(2)}x (range ${range(nb, (x) => x.toFixed(2))}x) = ${speed(nb)}; / DuckDB median ${median(nc).toFixed(2)}x (range ${range(nc, (x) => x.toFixed(2))}x) = ${speed(nc)}`);
  if (baselineDir) {
    const a0 = ms.cli.map((a, i) => a / ms.baseline[i]);
    console.log(`CLI time / baseline CLI time (${baselineDir}) median ${median(a0).toFixed(2)}x (range ${range(a0, (x) => x.toFixed(2))}x)`);
  }
  if (TIME) {
    // CPU seconds suffer less than wall time from a busy neighbour: the same ratios, per round, on CPU.
    const cab = cpu.cli.map((x, i) => x / cpu.parse[i]);
    const cac = cpu.cli.map((x, i) => x / cpu.duckdb[i]);
    console.log(`CPU (all threads) a/b median ${median(cab).toFixed(2)}x (range ${range(cab, (x) => x.toFixed(2))}x), a/c median ${median(cac).toFixed(2)}x (range ${range(cac, (x) => x.toFixed(2))}x)`);
  }
  console.log(`CLI throughput, whole process: ${fmt(N / (median(ms.cli) / 1000))} trades/s (median; range ${range(ms.cli.map((m) => N / (m / 1000)), fmt)})`);
  if (rssCurve.length > 0) {
    // RSS at points of the run's wall time: flat after the start means bounded memory.
    const last = rssCurve[rssCurve.length - 1].at;
    const at = (f: number) => rssCurve.find((s) => s.at >= f * last) ?? rssCurve[rssCurve.length - 1];
    const points = [0.05, 0.25, 0.5, 0.75, 0.95].map((f) => `${Math.round(f * 100)}% ${(at(f).kib / 1024).toFixed(0)}`).join(', ');
    console.log(`CLI RSS over the last round (MiB, at % of its wall time): ${points}; peak ${(Math.max(...rssCurve.map((s) => s.kib)) / 1024).toFixed(0)}`);
  }

  // The last CLI store against path c's aggregates: every window of each, compared column by column.
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  const q = (s: string) => `'${s.replaceAll("'", "''")}'`;
  await conn.run(`ATTACH ${q(cliStore(ROUNDS - 1))} AS cli (READ_ONLY); ATTACH ${q(duckStore(ROUNDS - 1))} AS duck (READ_ONLY)`);
  const [check] = (
    await conn.runAndReadAll(`
    WITH j AS (
      SELECT a.asset AS a_asset, b.asset AS b_asset, a.*, b.trades AS b_trades, b.total_volume AS b_total_volume, b.vwap AS b_vwap, b.open AS b_open, b.close AS b_close
      FROM cli.trade_windows a FULL OUTER JOIN duck.windows b ON a.asset = b.asset AND a.window_start = b.window_start
    )
    SELECT
      (SELECT count(*) FROM cli.trade_windows)::DOUBLE AS cli_windows,
      (SELECT count(*) FROM duck.windows)::DOUBLE AS duck_windows,
      (SELECT count(*) FROM cli.trades)::DOUBLE AS cli_trades,
      (SELECT count(*) FROM cli.trade_windows WHERE NOT is_final)::DOUBLE AS not_final,
      count(*) FILTER (WHERE a_asset IS NULL OR b_asset IS NULL)::DOUBLE AS unmatched,
      count(*) FILTER (WHERE a_asset IS NOT NULL AND b_asset IS NOT NULL AND (
        trades <> b_trades
        OR abs(total_volume - b_total_volume) > 1e-9 * greatest(abs(total_volume), abs(b_total_volume))
        OR abs(vwap - b_vwap) > 1e-9 * greatest(abs(vwap), abs(b_vwap))
        OR abs(open - b_open) > 1e-9 * greatest(abs(open), abs(b_open))
        OR abs(close - b_close) > 1e-9 * greatest(abs(close), abs(b_close))))::DOUBLE AS mismatched,
      max(greatest(abs(vwap - b_vwap) / abs(b_vwap), abs(total_volume - b_total_volume) / abs(b_total_volume))) AS worst_rel
    FROM j`)
  ).getRowObjectsJS() as { cli_windows: number; duck_windows: number; cli_trades: number; not_final: number; unmatched: number; mismatched: number; worst_rel: number | null }[];
  conn.closeSync();
  db.closeSync();
  const ok = check.unmatched === 0 && check.mismatched === 0 && check.cli_trades === N && check.cli_windows === check.duck_windows;
  if (!ok) failed = true;
  console.log(
    `\nstore check (last CLI round vs c's aggregates, asset + window_start; trades, total_volume, vwap, open, close within 1e-9 rel):\n` +
      `  windows ${fmt(check.cli_windows)} (DuckDB ${fmt(check.duck_windows)}), unmatched ${check.unmatched}, mismatched ${check.mismatched}, ` +
      `worst relative difference ${(check.worst_rel ?? 0).toExponential(1)}; trades rows ${fmt(check.cli_trades)} (expected ${fmt(N)}); ` +
      `${check.not_final} window(s) not final -> ${ok ? 'OK' : 'FAILED'}`,
  );
  rmSync(file, { force: true });
}
console.log(`bench took ${((performance.now() - benchStart) / 1000).toFixed(0)} s; load average at the end ${load()}`);
rmSync(dir, { recursive: true, force: true });
if (failed) process.exitCode = 1;
