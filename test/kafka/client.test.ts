// The Kafka connection flags and the kafkajs config they make (no network).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { describeConnection, kafkaConfig, kafkaLevelToPino, kafkaLogCreator, kafkaOptions, parseBrokers, type KafkaFlags } from '../../src/kafka/client.js';

const dir = mkdtempSync(join(tmpdir(), 'coinstream-kafka-client-'));
const pem = (name: string, text: string) => {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
};

/** What commander makes of a command line (and environment) for a command with the Kafka flags. */
function parse(argv: string[], env: Record<string, string> = {}): KafkaFlags {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const cmd = kafkaOptions(new Command('x')).exitOverride();
    cmd.configureOutput({ writeErr: () => undefined });
    cmd.parse(argv, { from: 'user' });
    return cmd.opts() as KafkaFlags;
  } finally {
    for (const k of Object.keys(env)) if (!(k in saved)) delete process.env[k];
  }
}

describe('--brokers', () => {
  it('takes HOST:PORT lists, names and IPv6', () => {
    expect(parseBrokers('127.0.0.1:9092')).toEqual(['127.0.0.1:9092']);
    expect(parseBrokers('kafka-1.example.com:9092, kafka_2:19092')).toEqual(['kafka-1.example.com:9092', 'kafka_2:19092']);
    expect(parseBrokers('[::1]:9092')).toEqual(['[::1]:9092']);
  });

  it.each([
    ['', /--brokers is required/],
    ['localhost', /"localhost" is not HOST:PORT/],
    ['localhost:0', /ports 1-65535/],
    ['localhost:65536', /ports 1-65535/],
    ['a:1,,b:2', /an empty entry/],
    ['kafka://a:9092', /has a scheme/],
    ['a:9092;b:9092', /not HOST:PORT/],
  ])('refuses %j with what to write', (text, why) => {
    const err = (() => {
      try {
        parseBrokers(text);
      } catch (e) {
        return e as Error;
      }
      throw new Error('accepted');
    })();
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(why);
    if (text !== '') expect(err.message).toMatch(/HOST:PORT\[,HOST:PORT\.\.\.\]/);
  });
});

describe('kafkaOptions', () => {
  it('adds the flags, each from its environment variable too', () => {
    expect(parse(['--brokers', 'a:1', '--sasl-mechanism', 'scram-sha-512', '--ssl', '--ssl-ca', '/ca.pem'])).toEqual({ brokers: 'a:1', saslMechanism: 'scram-sha-512', ssl: true, sslCa: '/ca.pem' });
    expect(parse([], { COINSTREAM_BROKERS: 'b:2', COINSTREAM_SASL_MECHANISM: 'plain', COINSTREAM_SSL: '1', COINSTREAM_SSL_CERT: '/c', COINSTREAM_SSL_KEY: '/k' })).toEqual({
      brokers: 'b:2',
      saslMechanism: 'plain',
      ssl: true,
      sslCert: '/c',
      sslKey: '/k',
    });
  });

  it('requires --brokers and a known SASL mechanism', () => {
    expect(() => parse([])).toThrow(/--brokers/);
    expect(() => parse(['--brokers', 'a:1', '--sasl-mechanism', 'gssapi'])).toThrow(/Allowed choices are plain, scram-sha-256, scram-sha-512/);
  });
});

describe('kafkaConfig', () => {
  it('plain: brokers, client id, kafkajs logs into ours, no TLS or SASL', () => {
    const config = kafkaConfig({ brokers: 'a:9092,b:9093' }, silentLogger, 'coinstream-test', {});
    expect(config.brokers).toEqual(['a:9092', 'b:9093']);
    expect(config.clientId).toBe('coinstream-test');
    expect(config.ssl).toBeUndefined();
    expect(config.sasl).toBeUndefined();
    expect(typeof config.logCreator).toBe('function');
    expect(config.logLevel).toBe(0); // a silent logger asks kafkajs for nothing
    expect(describeConnection(config)).toBe('a:9092,b:9093');
  });

  it('SASL takes its credentials from the environment', () => {
    const env = { COINSTREAM_KAFKA_USERNAME: 'KEY', COINSTREAM_KAFKA_PASSWORD: 's3cret' };
    const config = kafkaConfig({ brokers: 'a:9092', saslMechanism: 'scram-sha-256', ssl: true }, silentLogger, 'c', env);
    expect(config.sasl).toEqual({ mechanism: 'scram-sha-256', username: 'KEY', password: 's3cret' });
    expect(config.ssl).toBe(true);
    expect(describeConnection(config)).toBe('a:9092 (TLS) SASL scram-sha-256');
    expect(describeConnection(config)).not.toContain('s3cret');
    expect(kafkaConfig({ brokers: 'a:9092', saslMechanism: 'PLAIN', ssl: true }, silentLogger, 'c', env).sasl).toMatchObject({ mechanism: 'plain' });
  });

  it('SASL without credentials, or with an unknown mechanism, is a usage error that says what to set', () => {
    expect(() => kafkaConfig({ brokers: 'a:9092', saslMechanism: 'plain' }, silentLogger, 'c', {})).toThrow(/set COINSTREAM_KAFKA_USERNAME and COINSTREAM_KAFKA_PASSWORD/);
    expect(() => kafkaConfig({ brokers: 'a:9092', saslMechanism: 'plain' }, silentLogger, 'c', { COINSTREAM_KAFKA_USERNAME: 'u' })).toThrow(/set COINSTREAM_KAFKA_PASSWORD$/);
    expect(() => kafkaConfig({ brokers: 'a:9092', saslMechanism: 'oauthbearer' }, silentLogger, 'c', {})).toThrow(UsageError);
  });

  it('SASL without TLS says the credentials travel unencrypted', () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    kafkaConfig({ brokers: 'a:9092', saslMechanism: 'plain' }, logger, 'c', { COINSTREAM_KAFKA_USERNAME: 'u', COINSTREAM_KAFKA_PASSWORD: 'p' });
    expect(lines.join('')).toMatch(/without --ssl: the credentials travel in clear text/);
    expect(lines.join('')).not.toContain('"p"');
  });

  it('TLS files are read; a CA, a client certificate and key; the files imply --ssl', () => {
    const ca = pem('ca.pem', 'CA PEM');
    const cert = pem('cert.pem', 'CERT PEM');
    const key = pem('key.pem', 'KEY PEM');
    const config = kafkaConfig({ brokers: 'a:9093', ssl: true, sslCa: ca, sslCert: cert, sslKey: key }, silentLogger, 'c', {});
    expect(config.ssl).toEqual({ ca: [Buffer.from('CA PEM')], cert: Buffer.from('CERT PEM'), key: Buffer.from('KEY PEM') });
    expect(kafkaConfig({ brokers: 'a:9093', sslCa: ca }, silentLogger, 'c', {}).ssl).toEqual({ ca: [Buffer.from('CA PEM')] });
    expect(kafkaConfig({ brokers: 'a:9093', ssl: true }, silentLogger, 'c', {}).ssl).toBe(true);
  });

  it('a missing TLS file, or a certificate without its key, is a usage error', () => {
    expect(() => kafkaConfig({ brokers: 'a:9093', ssl: true, sslCa: join(dir, 'nope.pem') }, silentLogger, 'c', {})).toThrow(/--ssl-ca .*nope\.pem: cannot read it \(ENOENT\)/);
    expect(() => kafkaConfig({ brokers: 'a:9093', ssl: true, sslCert: pem('c2.pem', 'x') }, silentLogger, 'c', {})).toThrow(/needs both --ssl-cert and --ssl-key/);
    expect(() => kafkaConfig({ brokers: 'a:9093', sslCert: pem('c3.pem', 'x'), sslKey: join(dir, 'missing-key.pem') }, silentLogger, 'c', {})).toThrow(/--ssl-key .*missing-key\.pem: cannot read it/);
  });

  it('bad brokers fail before anything else', () => {
    expect(() => kafkaConfig({ brokers: 'nohost' }, silentLogger, 'c', {})).toThrow(UsageError);
  });
});

describe("kafkajs' logs", () => {
  it('map to pino levels: connection noise at debug, other errors and warnings at warn, info at info, debug at trace', () => {
    const at = (level: number, namespace: string, message: string, error?: string) => kafkaLevelToPino({ level, namespace, log: { message, error } });
    expect(at(1, 'Connection', 'Connection error: connect ECONNREFUSED 127.0.0.1:1')).toBe('debug');
    expect(at(1, 'BrokerPool', 'Failed to connect to seed broker, trying another broker from the list')).toBe('debug');
    expect(at(1, 'Producer', 'Failed to send messages', 'Connection error: connect ECONNREFUSED 127.0.0.1:9')).toBe('debug');
    expect(at(2, 'Producer', 'Limiting retries for the idempotent producer may invalidate EoS guarantees')).toBe('debug');
    expect(at(1, 'Producer', 'Failed to send messages', 'The message is too large')).toBe('warn');
    expect(at(2, 'Consumer', 'something odd')).toBe('warn');
    expect(at(1, 'Consumer', 'Crash: KafkaJSProtocolError: This most likely occurs because of a request being malformed')).toBe('warn');
    expect(at(1, 'Consumer', 'Crash: KafkaJSNumberOfRetriesExceeded: Connection error: connect ECONNREFUSED 127.0.0.1:9')).toBe('debug');
    expect(at(4, 'ConsumerGroup', 'Consumer has joined the group')).toBe('info');
    expect(at(5, 'Connection', 'Request Produce(key: 0, version: 7)')).toBe('trace');
  });

  it('come out as our JSON lines with the namespace, without stacks', () => {
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (l: string) => lines.push(l) });
    const log = kafkaLogCreator(logger)(4 as never);
    log({ namespace: 'Producer', level: 1, label: 'ERROR', log: { timestamp: 'x', logger: 'kafkajs', message: 'Failed to send messages', error: 'The message is too large', stack: 'Error: at ...' } as never });
    log({ namespace: 'Connection', level: 5, label: 'DEBUG', log: { timestamp: 'x', logger: 'kafkajs', message: 'Request Produce' } as never });
    expect(lines).toHaveLength(1); // trace is below debug
    const line = JSON.parse(lines[0]) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 40, msg: 'kafkajs: Failed to send messages', namespace: 'Producer', component: 'kafkajs', error: 'The message is too large' });
    expect(line.stack).toBeUndefined();
  });
});
