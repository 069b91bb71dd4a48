// The live path end to end, offline: `coinstream replay-server` serves the Kraken hour as a CoinCap v2
// trades websocket; `coinstream run --source coincap@ws://…` reads it and is stopped with SIGINT once
// the server has sent everything. Its store must hold what replay mode computes from the same file.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/sinks/duckdb/open.js';
import { killAll, spawnCoinstream, tradesWritten } from '../helpers/process.js';

const KRAKEN = 'data/kraken-btcusd-2019-07-01.coincap.jsonl';
const dir = mkdtempSync(join(tmpdir(), 'coinstream-live-'));
afterAll(killAll);


const rows = (path: string, sql: string) => queryRows(path, sql, { readOnly: true });

describe('live path through replay-server', () => {
  it('run --source coincap@ws://… stopped by SIGINT equals replay mode on the same file', async () => {
    const server = spawnCoinstream(['replay-server', KRAKEN, '--port', '0', '--speed', '3600']);
    const url = /ws:\/\/\S+/.exec(await server.waitFor('stdout', /listening on ws:\/\/\S+/))![0];

    const live = join(dir, 'live.duckdb');
    const run = spawnCoinstream(['run', '--source', `coincap@${url}`, '--sink', `duckdb:${live}`, '--no-dashboard', '--trigger', '200ms'], { COINSTREAM_LOG_LEVEL: 'debug' });
    await server.waitFor('stderr', /replay finished: 2672 messages sent/);
    // Stop once every trade the server sent is in the run's store.
    await run.waitFor('stderr', (err) => tradesWritten(err) >= 2672);
    run.child.kill('SIGINT');
    expect((await run.exit).code).toBe(0);
    expect(run.stderr()).toMatch(/stopping: writing the current windows/);
    server.child.kill('SIGINT');
    expect((await server.exit).code).toBe(0);

    const replayed = join(dir, 'replayed.duckdb');
    await new Promise<void>((resolve, reject) =>
      execFile('node', ['bin/coinstream.js', 'run', '--source', `replay:${KRAKEN}`, '--speed', 'max', '--sink', `duckdb:${replayed}`, '--no-dashboard'], (err) => (err ? reject(err) : resolve())),
    );

    const windows = `SELECT asset, epoch_ms(window_start)::DOUBLE AS s, epoch_ms(window_end)::DOUBLE AS e, trades, total_volume, total_amount,
      average_price, vwap, open, high, low, close, buy_volume, sell_volume FROM trade_windows ORDER BY asset, s`;
    const trends = `SELECT asset, epoch_ms(window_start)::DOUBLE AS s, vwap, prev_vwap, trend, avg_price_6m, change_6m_pct, windows_6m FROM price_trends ORDER BY asset, s`;
    const liveWindows = await rows(live, windows);
    expect(liveWindows).toHaveLength(60);
    expect(liveWindows).toEqual(await rows(replayed, windows));
    expect(await rows(live, trends)).toEqual(await rows(replayed, trends));
    expect(await rows(live, 'SELECT count(*)::DOUBLE AS n FROM trades')).toEqual([{ n: 2672 }]);
    // Stopped by SIGINT, not by the end of input: the windows still inside the watermark stay open.
    const open = await rows(live, 'SELECT count(*)::DOUBLE AS n FROM trade_windows WHERE NOT is_final');
    expect(open[0].n).toBeGreaterThan(0);
  });
});
