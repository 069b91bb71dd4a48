// `coinstream replay-server FILE`: serves a recorded JSONL(.gz) file as a CoinCap v2 trades websocket,
// so the live path (reconnects, de-duplication, the whole pipeline) runs offline. Lines are broadcast
// to every connected client as they come due, paced by event-time gaps at `speed` x real time, starting
// when the first client connects; a client that joins later, like on a live feed, gets what follows.
import { WebSocketServer, WebSocket } from 'ws';
import { systemClock, type Clock } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import { DamagedFileError, readFileChunks, readLineChunks, type LongLine } from '../line-reader.js';

export interface ReplayServerOptions {
  file: string;
  /** Lines longer than this are skipped with a warning (default 1 MiB). */
  maxLineBytes?: number;
  port: number;
  /** Times real time; Infinity for as fast as the clients take them. */
  speed: number;
  logger: Logger;
  clock?: Clock;
  host?: string;
}

export interface ReplayServer {
  url: string;
  port: number;
  /** Resolves once every line was sent, with the count. */
  done: Promise<{ sent: number }>;
  close(): Promise<void>;
}

/** Above this many bytes queued for a client, wait for it before sending more. */
const MAX_BUFFERED = 4 << 20;

export async function startReplayServer(o: ReplayServerOptions): Promise<ReplayServer> {
  const clock = o.clock ?? systemClock;
  const wss = new WebSocketServer({ port: o.port, host: o.host ?? '127.0.0.1' });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const port = (wss.address() as { port: number }).port;
  const stop = new AbortController();
  let firstClient: () => void = () => undefined;
  const started = new Promise<void>((resolve) => (firstClient = resolve));
  wss.on('connection', (socket, req) => {
    o.logger.info({ client: req.socket.remoteAddress, path: req.url, clients: wss.clients.size }, 'replay-server: client connected');
    socket.on('error', (err) => o.logger.warn({ err: err.message }, 'replay-server: client socket error'));
    firstClient();
  });

  const done = (async () => {
    await started;
    let sent = 0;
    let firstTime = NaN;
    let startAt = 0;
    /** Waits until a line is due: event-time gaps at `speed` x real time from the first line. */
    const pace = async (line: string) => {
      if (!Number.isFinite(o.speed)) return;
      const ts = eventTime(line);
      if (ts === null) return;
      if (Number.isNaN(firstTime)) {
        firstTime = ts;
        startAt = clock.now();
      }
      const wait = startAt + (ts - firstTime) / o.speed - clock.now();
      if (wait > 1) await clock.sleep(wait, stop.signal).catch(() => undefined);
    };
    const onLongLine = (line: LongLine) => o.logger.warn({ bytes: line.bytes }, `replay-server: skipped a line of ${line.bytes} bytes, longer than --max-line`);
    try {
      for await (const lines of readLineChunks(readFileChunks(o.file), { maxLineBytes: o.maxLineBytes, onLongLine })) {
        for (const line of lines) {
          if (stop.signal.aborted) return { sent };
          if (line.trim() === '') continue;
          await pace(line);
          for (const client of wss.clients) {
            if (client.readyState !== WebSocket.OPEN) continue;
            while (client.bufferedAmount > MAX_BUFFERED && client.readyState === WebSocket.OPEN) await clock.sleep(5);
            client.send(line);
          }
          sent++;
        }
      }
    } catch (err) {
      // A truncated recording is served up to the damage, like `run` replays it.
      if (!(err instanceof DamagedFileError)) throw err;
      o.logger.warn({ file: o.file, offset: err.offset }, `replay-server: ${err.message}`);
    }
    o.logger.info({ sent, clients: wss.clients.size }, `replay-server: replay finished: ${sent} messages sent`);
    return { sent };
  })();

  return {
    url: `ws://127.0.0.1:${port}/trades/replay`,
    port,
    done,
    close: async () => {
      stop.abort();
      for (const c of wss.clients) c.close(1001, 'server shutting down');
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

/** The timestamp field of a trade line, without parsing garbage twice; null when there is none. */
function eventTime(line: string): number | null {
  const m = /"timestamp":\s*(\d+)/.exec(line);
  return m ? Number(m[1]) : null;
}
