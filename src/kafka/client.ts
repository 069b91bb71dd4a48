// How coinstream reaches Kafka (DESIGN.md: kafkajs): the command-line flags every Kafka command shares
// (`ingest`, `process`, `topics`), the kafkajs config they make, and kafkajs' logs through our logger.
//
// kafkajs is imported here for its types only: main.ts adds these flags to the commands while building
// the program, and `coinstream --help` must not load kafkajs.
import { readFileSync } from 'node:fs';
import type { KafkaConfig, LogEntry, SASLOptions, logLevel as KafkaLogLevel, logCreator } from 'kafkajs';
import { Option, type Command } from 'commander';
import { UsageError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

export interface KafkaFlags {
  /** `HOST:PORT[,HOST:PORT...]` */
  brokers: string;
  saslMechanism?: string;
  ssl?: boolean;
  sslCa?: string;
  sslCert?: string;
  sslKey?: string;
}

export const SASL_MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512'] as const;
export const USERNAME_ENV = 'COINSTREAM_KAFKA_USERNAME';
export const PASSWORD_ENV = 'COINSTREAM_KAFKA_PASSWORD';

const BROKERS_EXAMPLE = 'e.g. --brokers kafka1:9092,kafka2:9092';

/** Adds the connection flags (each also read from its COINSTREAM_ variable) to a Kafka command. */
export function kafkaOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--brokers <host:port,...>', 'Kafka bootstrap brokers, comma-separated').env('COINSTREAM_BROKERS').makeOptionMandatory())
    .addOption(
      new Option('--sasl-mechanism <mechanism>', `SASL authentication; the credentials come from ${USERNAME_ENV} and ${PASSWORD_ENV}`)
        .choices(SASL_MECHANISMS)
        .env('COINSTREAM_SASL_MECHANISM'),
    )
    .addOption(new Option('--ssl', 'connect with TLS (implied by --ssl-ca/--ssl-cert/--ssl-key)').env('COINSTREAM_SSL'))
    .addOption(new Option('--ssl-ca <file>', 'PEM file of the CA that signed the brokers\' certificates (default: the system CAs)').env('COINSTREAM_SSL_CA'))
    .addOption(new Option('--ssl-cert <file>', 'PEM client certificate, for mutual TLS (with --ssl-key)').env('COINSTREAM_SSL_CERT'))
    .addOption(new Option('--ssl-key <file>', 'PEM private key of --ssl-cert').env('COINSTREAM_SSL_KEY'));
}

/** `HOST:PORT[,...]` as kafkajs wants it; a UsageError that says what to write otherwise. */
export function parseBrokers(text: string | undefined): string[] {
  if (text === undefined || text.trim() === '') throw new UsageError(`--brokers is required: the Kafka bootstrap brokers as HOST:PORT[,HOST:PORT...] (${BROKERS_EXAMPLE}, or COINSTREAM_BROKERS)`);
  const brokers = text.split(',').map((b) => b.trim());
  for (const b of brokers) {
    // HOST:PORT, or [IPv6]:PORT; no scheme.
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/.exec(b);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) {
      const why = b === '' ? 'an empty entry' : /^[a-z]+:\/\//i.test(b) ? `"${b}" has a scheme` : `"${b}" is not HOST:PORT`;
      throw new UsageError(`--brokers "${text}": ${why}; write HOST:PORT[,HOST:PORT...] with ports 1-65535 (${BROKERS_EXAMPLE})`);
    }
  }
  return brokers;
}

function readPem(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`${flag} ${file}: cannot read it (${e.code ?? e.message}); give a PEM file`);
  }
}

/**
 * The kafkajs config for these flags: brokers checked, SASL credentials from the environment, TLS files
 * read (a missing one is a UsageError), kafkajs' logs into `logger`.
 */
export function kafkaConfig(flags: KafkaFlags, logger: Logger, clientId: string, env: NodeJS.ProcessEnv = process.env): KafkaConfig {
  const brokers = parseBrokers(flags.brokers);
  const config: KafkaConfig = {
    clientId,
    brokers,
    // kafkajs' 1 s is short for a TLS handshake to a managed cluster across the internet.
    connectionTimeout: 5000,
    logLevel: kafkaLogLevelFor(logger),
    logCreator: kafkaLogCreator(logger),
  };

  const tls = flags.ssl === true || flags.sslCa !== undefined || flags.sslCert !== undefined || flags.sslKey !== undefined;
  if ((flags.sslCert === undefined) !== (flags.sslKey === undefined)) {
    throw new UsageError(`mutual TLS needs both --ssl-cert and --ssl-key (got only ${flags.sslCert !== undefined ? '--ssl-cert' : '--ssl-key'})`);
  }
  if (tls) {
    if (flags.sslCa === undefined && flags.sslCert === undefined) config.ssl = true;
    else {
      config.ssl = {};
      if (flags.sslCa !== undefined) config.ssl.ca = [readPem(flags.sslCa, '--ssl-ca')];
      if (flags.sslCert !== undefined) config.ssl.cert = readPem(flags.sslCert, '--ssl-cert');
      if (flags.sslKey !== undefined) config.ssl.key = readPem(flags.sslKey, '--ssl-key');
    }
  }

  if (flags.saslMechanism !== undefined) {
    const mechanism = flags.saslMechanism.toLowerCase();
    if (!(SASL_MECHANISMS as readonly string[]).includes(mechanism)) {
      throw new UsageError(`--sasl-mechanism "${flags.saslMechanism}" is not supported; use one of ${SASL_MECHANISMS.join(', ')}`);
    }
    const username = env[USERNAME_ENV];
    const password = env[PASSWORD_ENV];
    const missing = [!username && USERNAME_ENV, !password && PASSWORD_ENV].filter(Boolean);
    if (missing.length > 0) {
      throw new UsageError(`--sasl-mechanism ${mechanism} needs the credentials in the environment: set ${missing.join(' and ')}`);
    }
    config.sasl = { mechanism, username, password } as SASLOptions;
    if (!tls) logger.warn({ mechanism }, `SASL ${mechanism} without --ssl: the credentials${mechanism === 'plain' ? ' travel in clear text' : ''} and the data go unencrypted`);
  }
  return config;
}

/** The innermost cause's message: kafkajs wraps the socket's error ("connect ECONNREFUSED ...") in its own. */
export function rootMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  for (let i = 0; i < 10 && e?.cause; i++) e = e.cause as typeof e;
  return e?.message ?? String(err);
}

/** Where the brokers are and how we talk to them, for log lines: never the credentials. */
export function describeConnection(config: KafkaConfig): string {
  const brokers = Array.isArray(config.brokers) ? config.brokers.join(',') : '(dynamic)';
  const sasl = config.sasl && 'mechanism' in config.sasl ? ` SASL ${config.sasl.mechanism}` : '';
  return `${brokers}${config.ssl ? ' (TLS)' : ''}${sasl}`;
}

// kafkajs' levels (its `logLevel` enum, as numbers so that this file loads no kafkajs).
const K = { NOTHING: 0, ERROR: 1, WARN: 2, INFO: 4, DEBUG: 5 } as const;

/** kafkajs filters before it calls us: ask for what our logger would print (its DEBUG only at trace). */
function kafkaLogLevelFor(logger: Logger): KafkaLogLevel {
  const level = logger.level;
  if (level === 'silent') return K.NOTHING as KafkaLogLevel;
  if (level === 'trace') return K.DEBUG as KafkaLogLevel;
  // Errors are asked for even at `error`: some of them are printed at warn or debug (see below).
  return K.INFO as KafkaLogLevel;
}

type PinoLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/**
 * kafkajs' own errors are what a client saw on the way; whether they matter is decided by the caller,
 * which logs its own line (an ingest logs once when the brokers become unreachable and once when they
 * are back). So a refused or dropped connection and a request timeout are debug (as is everything in
 * kafkajs' Connection/BrokerPool namespaces); the rest of its errors (a consumer's crash, a refused
 * batch) and its warnings are warn, its info info, its debug trace.
 */
export function kafkaLevelToPino(entry: Pick<LogEntry, 'namespace' | 'level'> & { log: { message: string; error?: unknown } }): PinoLevel {
  const { level, namespace, log } = entry;
  if (level >= K.DEBUG) return 'trace';
  if (level >= K.INFO) return 'info';
  const text = `${log.message} ${typeof log.error === 'string' ? log.error : ''}`;
  if (isConnectionNoise(namespace, text)) return 'debug';
  // We keep retries finite on purpose and say so ourselves.
  if (/Limiting retries for the idempotent producer/.test(text)) return 'debug';
  return 'warn';
}

const NOISY_NAMESPACES = new Set(['Connection', 'BrokerPool', 'Cluster', 'RequestQueue']);
const NOISY_TEXT = /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|Connection (error|timeout)|Closed connection|Connection closed|Failed to connect|Request .* timed out|KafkaJSConnectionError|not found in the cached metadata|There is no leader/i;

function isConnectionNoise(namespace: string, text: string): boolean {
  return NOISY_NAMESPACES.has(namespace) || NOISY_TEXT.test(text);
}

/** kafkajs' logs as pino lines: `kafkajs: <message>` with its namespace and fields (no stacks). */
export function kafkaLogCreator(logger: Logger): logCreator {
  const log = logger.child({ component: 'kafkajs' });
  return () => (entry: LogEntry) => {
    const { message, timestamp: _t, logger: _l, stack, ...extra } = entry.log as LogEntry['log'] & { stack?: unknown };
    void _t;
    void _l;
    const level = kafkaLevelToPino({ namespace: entry.namespace, level: entry.level, log: entry.log });
    if (!log.isLevelEnabled(level)) return;
    const fields: Record<string, unknown> = { namespace: entry.namespace, ...extra };
    if (stack !== undefined && level === 'trace') fields.stack = stack;
    log[level](fields, `kafkajs: ${message}`);
  };
}
