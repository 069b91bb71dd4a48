// `coinstream record` keeps what a live source receives, rotating files by size; the record reads
// back through `--source replay:` to the same trades.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { rotatedName } from '../../src/sources/feeds/recorder.js';
import { startReplayServer, type ReplayServer } from '../../src/sources/feeds/replay-server.js';

const KRAKEN = 'data/kraken-btcusd-2019-07-01.coincap.jsonl';
const dir = mkdtempSync(join(tmpdir(), 'coinstream-record-'));
let server: ReplayServer | null = null;
afterAll(async () => server?.close());

describe('coinstream record', () => {
  it('names rotated files FILE.N.jsonl(.gz)', () => {
    expect(rotatedName('a/trades.jsonl.gz', 0)).toBe('a/trades.jsonl.gz');
    expect(rotatedName('a/trades.jsonl.gz', 2)).toBe('a/trades.2.jsonl.gz');
    expect(rotatedName('t.jsonl', 1)).toBe('t.1.jsonl');
  });

  it('records a live feed to rotating gzip files that hold every trade exactly once', async () => {
    server = await startReplayServer({ file: KRAKEN, port: 0, speed: Infinity, logger: silentLogger });
    const out = join(dir, 'trades.jsonl.gz');
    const child = spawn('node', ['bin/coinstream.js', 'record', '--source', `coincap@${server.url}`, '--out', out, '--rotate-mb', '0.1'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const exit = new Promise<number>((r) => child.on('exit', (c) => r(c ?? -1)));
    await server.done;
    await new Promise((r) => setTimeout(r, 1000));
    child.kill('SIGINT');
    expect(await exit).toBe(0);
    expect(stderr).toMatch(/recorded 2672 trades/);
    const files = readdirSync(dir).filter((f) => f.startsWith('trades')).sort();
    expect(files.length).toBeGreaterThan(2); // 0.1 MB per file, ~0.45 MB of trades
    const recorded = files.flatMap((f) => gunzipSync(readFileSync(join(dir, f))).toString('utf8').split('\n').filter(Boolean)).map((l) => JSON.parse(l));
    const original = readFileSync(KRAKEN, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(recorded).toHaveLength(original.length);
    const strip = ({ receivedAt: _r, ...t }: Record<string, unknown>) => t;
    expect(new Set(recorded.map((t) => JSON.stringify(strip(t))))).toEqual(new Set(original.map((t) => JSON.stringify(t))));
    expect(recorded.every((t) => typeof t.receivedAt === 'number')).toBe(true);
  });
});
