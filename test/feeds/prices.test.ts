// CoinCap prices: a prices view (latest price per asset), never trades; bad credentials stop the run
// with a message that says what to do.
import { createServer } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { killAll, spawnCoinstream } from '../helpers/process.js';

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((f) => f()));
afterEach(killAll);

describe('coincap-prices', () => {
  it('shows the latest price per asset on the console and aggregates no trades', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((r) => wss.once('listening', r));
    const seen: string[] = [];
    const connected = new Promise<WebSocket>((resolve) =>
      wss.on('connection', (socket, req) => {
        seen.push(req.url ?? '');
        socket.send('{"bitcoin":"6929.82520245","ethereum":"404.97286106"}');
        resolve(socket);
      }),
    );
    cleanups.push(() => wss.close());
    const url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}/prices`;
    const run = spawnCoinstream(['run', '--source', `coincap-prices:bitcoin,ethereum@${url}`, '--sink', 'console', '--no-dashboard', '--trigger', '100ms'], { COINCAP_API_KEY: 'test-key' });
    // The second price goes out once the first is on the console (so the client is connected), and the
    // run is stopped once the second is on the console too.
    await run.waitFor('stdout', /\| bitcoin +\| +6,929\.83 \|/);
    (await connected).send('{"bitcoin":"6930.1"}');
    await run.waitFor('stdout', /\| bitcoin +\| +6,930\.10 \|/);
    run.child.kill('SIGINT');
    const r = { code: (await run.exit).code, stdout: run.stdout() };
    expect(r.code).toBe(0);
    expect(seen[0]).toBe('/prices?assets=bitcoin%2Cethereum&apiKey=test-key');
    expect(r.stdout).toMatch(/\| bitcoin +\| +6,929\.83 \|/);
    expect(r.stdout).toMatch(/\| ethereum +\| +404\.9729 \|/);
    expect(r.stdout).toMatch(/\| bitcoin +\| +6,930\.10 \|/);
    expect(r.stdout).not.toMatch(/window_start/); // no trade windows from prices
  });

  it('stops with a clear error when the key is refused (HTTP 401), instead of retrying forever', async () => {
    const http = createServer();
    http.on('upgrade', (_req, socket) => socket.end('HTTP/1.1 401 Unauthorized\r\n\r\n'));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    cleanups.push(() => http.close());
    const url = `ws://127.0.0.1:${(http.address() as { port: number }).port}/prices`;
    const run = spawnCoinstream(['run', '--source', `coincap-prices:bitcoin@${url}`, '--sink', 'console', '--no-dashboard']);
    expect((await run.exit).code).toBe(1);
    expect(run.stderr()).toMatch(/coinstream: failed: coincap: handshake refused: HTTP 401 .*set COINCAP_API_KEY to a valid CoinCap v3 API key .*\[UNAUTHORIZED\]/);
  });
});
