// One catalogue of errors with stable codes and a `retriable` flag, so callers decide what to do
// by code, not by parsing messages (the way undici and kafkajs do it).

export type ErrorCode =
  | 'USAGE' // bad flag, bad value: exit 2
  | 'CONFIG' // a config object that cannot work: exit 2
  | 'SOURCE_NOT_FOUND' // a replay file that is not there: exit 2
  | 'SOURCE_UNREADABLE' // a file that is there but cannot be read (I/O error): exit 1
  | 'UNAUTHORIZED' // a feed refused our credentials
  | 'SINK_FAILED' // a store refused a write
  | 'KAFKA_FAILED' // the Kafka cluster could not be reached or refused a request (topics)
  | 'STORE_LOCKED' // another process holds the store
  | 'PORT_IN_USE' // a port we were asked to listen on is taken
  | 'FENCED'; // another writer moved the job's progress in the store since we read it (a rebalance)

export class CoinstreamError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retriable = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CoinstreamError';
  }
}

/** A mistake in how the program was called: printed as one line, exit code 2. */
export class UsageError extends CoinstreamError {
  constructor(message: string) {
    super('USAGE', message);
    this.name = 'UsageError';
  }
}

export function isUsageLike(err: unknown): boolean {
  return err instanceof CoinstreamError && (err.code === 'USAGE' || err.code === 'CONFIG' || err.code === 'SOURCE_NOT_FOUND');
}
