// The dashboard's HTTP server (fastify): the built web page from dist/web/, a JSON API over
// DashboardData (history), a Server-Sent Events stream of live updates (sse.ts), health and
// Prometheus metrics. It knows only the DashboardData interface, never where the data comes from.
//
//   GET /, /index.html, /app.js, /style.css, ...  the page (plain file names in staticDir only)
//   GET /api/assets                               { assets: string[] }
//   GET /api/windows?asset=&from=&to=&limit=      { windows: WindowResult[] }
//   GET /api/trends?asset=&from=&to=&limit=       { trends: TrendResult[] }
//   GET /api/health                               { ok, ...DashboardStatus } (503 while reconnecting)
//   GET /api/stream                               text/event-stream: status, asset, reset
//   GET /metrics                                  Prometheus text
//
// Every response carries a strict Content-Security-Policy (no inline script or style, no eval) and the
// usual hardening headers. Data goes out only as JSON (never spliced into HTML): the page renders text.
import { readdir, readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fastify, type FastifyReply } from 'fastify';
import { z } from 'zod';
import type { Clock } from '../core/clock.js';
import { CoinstreamError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { DashboardData } from './contract.js';
import { jsonSafe, SseHub, type SseHubOptions } from './sse.js';
import { isLoopbackHost } from '../core/loopback.js';

export interface DashboardServerOptions {
  data: DashboardData;
  host: string;
  port: number;
  logger: Logger;
  /** A prom-client Registry (or anything with the same two members); without it /metrics is 404. */
  metrics?: { contentType: string; metrics(): Promise<string> };
  /** The built page; default dist/web/ of this package. */
  staticDir?: string;
  /** Concurrent /api/stream clients, default 100. */
  maxClients?: number;
  /** For tests: the stream's clock and intervals (coalescing 200 ms, status 1 s, ping 15 s, ring 2000). */
  stream?: Omit<SseHubOptions, 'onSlowClient'> & { clock?: Clock };
}

export interface DashboardServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export const DEFAULT_STATIC_DIR = fileURLToPath(new URL('../../dist/web/', import.meta.url));

/** The host name of a Host header (`127.0.0.1:8080` -> `127.0.0.1`, `[::1]:80` -> `[::1]`). */
function hostnameOf(header: string | undefined): string {
  if (!header) return '';
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.lastIndexOf(':');
  return colon === -1 ? h : h.slice(0, colon);
}

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff2': 'font/woff2',
};

/** A file name the page may ask for: no separators, no leading dot (so no `..`, no dotfiles). */
const PLAIN_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$/;

export const MAX_LIMIT = 5000;
export const DEFAULT_LIMIT = 1000;

export async function startDashboardServer(o: DashboardServerOptions): Promise<DashboardServer> {
  const { data, logger } = o;
  const log = logger.child({ component: 'dashboard' });
  const staticDir = o.staticDir ?? DEFAULT_STATIC_DIR;
  const maxClients = o.maxClients ?? 100;
  if (!Number.isInteger(maxClients) || maxClients < 1) throw new CoinstreamError('CONFIG', `dashboard maxClients must be a whole number >= 1, got ${maxClients}`);

  const hub = new SseHub(data, {
    ...o.stream,
    onSlowClient: (buffered) => log.warn(`dropped a dashboard stream client that stopped reading (${buffered} bytes unsent); it reconnects and resumes`),
  });

  // fastify's own logger stays off: its per-request lines would drown ours. Failures are logged below.
  const app = fastify({
    logger: false,
    forceCloseConnections: true,
    return503OnClosing: true,
    // A URL fastify cannot decode (`/%`) or a broken content type: answered here, so that it carries
    // the security headers and our error shape too.
    frameworkErrors: (err, _req, res) => {
      const reply = res as unknown as FastifyReply;
      reply.headers(SECURITY_HEADERS);
      reply.code(400).send({ error: `bad request: ${err.message}` });
    },
  });
  app.setReplySerializer((payload) => JSON.stringify(payload, jsonSafe));

  // Bound to loopback, only requests that name a loopback host are answered: a web page elsewhere
  // could otherwise point its own domain at 127.0.0.1 (DNS rebinding) and read the dashboard.
  const loopbackOnly = isLoopbackHost(o.host);
  app.addHook('onRequest', (req, reply, done) => {
    reply.headers(SECURITY_HEADERS);
    if (loopbackOnly && !isLoopbackHost(hostnameOf(req.headers.host))) {
      reply.code(403).send({ error: `this dashboard answers requests for localhost only, not for host "${req.headers.host ?? ''}" (start it with --host to serve other names)` });
      return;
    }
    done();
  });
  app.addHook('onSend', (req, reply, payload, done) => {
    if (req.url.startsWith('/api/') && !reply.hasHeader('Cache-Control')) reply.header('Cache-Control', 'no-store');
    done(null, payload);
  });

  app.setErrorHandler((err: { statusCode?: number; message?: string }, req, reply) => {
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) {
      log.error({ err }, `dashboard: ${req.method} ${req.url} failed: ${err.message ?? String(err)}`);
      return reply.code(status).send({ error: 'internal error; the server log says more' });
    }
    log.debug({ err }, `dashboard: ${req.method} ${req.url}: ${err.message}`);
    return reply.code(status).send({ error: err.message ?? 'bad request' });
  });

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ error: `no such page: ${req.method} ${truncate(req.url.split('?')[0] ?? '', 100)}` });
  });

  // --- the page -------------------------------------------------------------------------------------
  const sendStatic = async (reply: FastifyReply, name: string, isIndex: boolean) => {
    if (!PLAIN_NAME.test(name)) return notFound(reply, name);
    let present = false;
    try {
      const entries = await readdir(staticDir, { withFileTypes: true });
      present = entries.some((e) => e.name === name && e.isFile());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ENOTDIR') throw err;
    }
    if (!present) {
      if (isIndex) {
        return reply
          .code(503)
          .type('text/plain; charset=utf-8')
          .header('Cache-Control', 'no-store')
          .send(`The dashboard page is not built (no index.html in ${staticDir}). Run \`npm run build\`, then reload.\n`);
      }
      return notFound(reply, name);
    }
    const body = await readFile(join(staticDir, name));
    return reply
      .type(CONTENT_TYPES[extname(name).toLowerCase()] ?? 'application/octet-stream')
      .header('Cache-Control', 'no-cache')
      .send(body);
  };
  const notFound = (reply: FastifyReply, name: string) => reply.code(404).send({ error: `no such file: /${truncate(name, 100)}` });

  app.get('/', (_req, reply) => sendStatic(reply, 'index.html', true));
  app.get<{ Params: { file: string } }>('/:file', (req, reply) => sendStatic(reply, req.params.file, req.params.file === 'index.html'));

  // --- the API ---------------------------------------------------------------------------------------
  app.get('/api/assets', async () => ({ assets: await data.assets() }));

  app.get('/api/windows', async (req, reply) => {
    const q = parseRangeQuery(req.query);
    if (typeof q === 'string') return reply.code(400).send({ error: q });
    return { windows: await data.windows(q) };
  });

  app.get('/api/trends', async (req, reply) => {
    const q = parseRangeQuery(req.query);
    if (typeof q === 'string') return reply.code(400).send({ error: q });
    return { trends: await data.trends(q) };
  });

  app.get('/api/health', async (_req, reply) => {
    const status = data.status();
    const ok = status.state !== 'reconnecting';
    return reply.code(ok ? 200 : 503).send({ ok, ...status });
  });

  app.get('/api/stream', (req, reply) => {
    if (hub.clientCount >= maxClients) {
      return reply
        .code(503)
        .header('Retry-After', '10')
        .send({ error: `too many live streams open (${maxClients}); close another dashboard tab and reload` });
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache',
      'X-Accel-Buffering': 'no',
      Connection: 'keep-alive',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    req.raw.socket.setNoDelay(true);
    const lastEventId = req.headers['last-event-id'];
    const leave = hub.connect(res, Array.isArray(lastEventId) ? lastEventId[0] : lastEventId);
    log.debug({ streams: hub.clientCount }, 'live stream opened');
    res.on('close', () => {
      leave();
      log.debug({ streams: hub.clientCount }, 'live stream closed');
    });
  });

  app.get('/metrics', async (_req, reply) => {
    if (!o.metrics) return reply.code(404).send({ error: 'this process has no metrics registry' });
    const text = await o.metrics.metrics();
    return reply.type(o.metrics.contentType).header('Cache-Control', 'no-store').send(text);
  });

  // --- listen ----------------------------------------------------------------------------------------
  try {
    await app.listen({ host: o.host, port: o.port });
  } catch (err) {
    hub.close();
    await app.close().catch((closeErr: unknown) => log.debug({ err: closeErr }, 'dashboard: close after a failed listen'));
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      throw new CoinstreamError('PORT_IN_USE', `port ${o.port} on ${o.host} is in use: ${(err as Error).message}; choose another --port (0 picks a free one)`, false, { cause: err });
    }
    if (code === 'EACCES') {
      throw new CoinstreamError('CONFIG', `not allowed to listen on port ${o.port} on ${o.host}: ${(err as Error).message}; pass --port 1024 or higher`, false, { cause: err });
    }
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      throw new CoinstreamError('CONFIG', `cannot listen on ${o.host}: ${(err as Error).message}; pass a local address (127.0.0.1)`, false, { cause: err });
    }
    throw err;
  }
  const port = (app.server.address() as AddressInfo).port;
  const url = `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}/`;
  log.info(`dashboard on ${url}`);

  let closing: Promise<void> | null = null;
  return {
    url,
    port,
    close() {
      closing ??= (async () => {
        hub.close();
        await app.close();
      })();
      return closing;
    },
  };
}

// --- query parameters ------------------------------------------------------------------------------

export interface RangeQuery {
  asset?: string;
  from: number;
  to: number;
  limit: number;
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/;
const ISO_LOCAL = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?$/;

function timeParam(name: 'from' | 'to') {
  return z.unknown().transform((value, ctx): number => {
    const fail = (why: string) => {
      ctx.issues.push({ code: 'custom', input: value, message: `${name}: ${why}` });
      return z.NEVER;
    };
    if (typeof value !== 'string') return fail('give it once');
    const text = value.trim();
    const what = 'send epoch milliseconds (1700000000000) or an ISO-8601 time with a zone (2024-01-31T12:00:00Z)';
    if (/^-?\d{1,16}$/.test(text)) {
      const ms = Number(text);
      if (!Number.isSafeInteger(ms) || Math.abs(ms) > 8.64e15) return fail(`${quote(value)} is out of range; ${what}`);
      return ms;
    }
    if (ISO_LOCAL.test(text)) return fail(`${quote(value)} has no time zone; add Z (UTC) or an offset (+02:00)`);
    if (!ISO_TIME.test(text)) return fail(`${quote(value)} is not a time; ${what}`);
    const ms = Date.parse(text);
    if (!Number.isFinite(ms) || !sameCalendarDate(text)) return fail(`${quote(value)} is not a valid date; ${what}`);
    return ms;
  });
}

/**
 * V8's Date.parse rolls 2019-02-30 over into March (it checks a day only against 31), with a time and
 * zone too: refuse a written date that does not exist. Checked on the text's own date, before any
 * offset moves it.
 */
function sameCalendarDate(text: string): boolean {
  const [y, m, d] = text.slice(0, 10).split('-').map(Number);
  const day = new Date(Date.UTC(y, m - 1, d));
  return day.getUTCFullYear() === y && day.getUTCMonth() === m - 1 && day.getUTCDate() === d;
}

const rangeQuerySchema = z.strictObject({
  asset: z.unknown().transform((value, ctx): string => {
    if (typeof value === 'string' && value.length >= 1 && value.length <= 200) return value;
    ctx.issues.push({
      code: 'custom',
      input: value,
      message: typeof value === 'string' ? 'asset: send an asset id of 1 to 200 characters (bitcoin), or leave it out for every asset' : 'asset: give it once',
    });
    return z.NEVER;
  }).optional(),
  from: timeParam('from').optional(),
  to: timeParam('to').optional(),
  limit: z.unknown().transform((value, ctx): number => {
    if (typeof value === 'string' && /^\d{1,5}$/.test(value.trim())) {
      const n = Number(value.trim());
      if (n >= 1 && n <= MAX_LIMIT) return n;
    }
    ctx.issues.push({
      code: 'custom',
      input: value,
      message: `limit: send a whole number from 1 to ${MAX_LIMIT} (default ${DEFAULT_LIMIT})${typeof value === 'string' ? `, not ${quote(value)}` : ''}`,
    });
    return z.NEVER;
  }).optional(),
});

/** The query of /api/windows and /api/trends, or what is wrong with it (a message for the 400). */
export function parseRangeQuery(query: unknown): RangeQuery | string {
  const parsed = rangeQuerySchema.safeParse(query ?? {});
  if (!parsed.success) {
    return parsed.error.issues
      .map((issue) =>
        issue.code === 'unrecognized_keys'
          ? `unknown parameter ${issue.keys.map((k) => quote(k)).join(', ')}; send asset, from, to, limit`
          : issue.message,
      )
      .join('; ');
  }
  const { asset, from = -Infinity, to = Infinity, limit = DEFAULT_LIMIT } = parsed.data;
  if (!(from < to)) return `from must be before to (got from=${from}, to=${to})`;
  return asset === undefined ? { from, to, limit } : { asset, from, to, limit };
}

function quote(value: string): string {
  return JSON.stringify(truncate(value, 80));
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}
