// DuckDB stores whose worker began opening the file before the command knew it would get that far
// (DuckDBSink starts it from its constructor, to overlap DuckDB's ~0.15 s start with the rest of the
// command). A command that fails before it opens its sinks (a taken --port, a missing Kafka topic)
// must not exit while such a worker is half-way through creating the file: main() waits for each to
// finish opening and closes it cleanly. This file loads no DuckDB, so main() can import it for free.

export interface EarlyOpen {
  /** Waits for the open under way, then closes the store and stops its worker. */
  abandon(): Promise<void>;
}

const pending = new Set<EarlyOpen>();

export function earlyOpenStarted(store: EarlyOpen): void {
  pending.add(store);
}

/** The command opened the store: nothing to settle for it. */
export function earlyOpenTaken(store: EarlyOpen): void {
  pending.delete(store);
}

/** Closes every store opened early and never used (a command that failed first). */
export async function settleEarlyOpens(): Promise<void> {
  const stores = [...pending];
  pending.clear();
  await Promise.allSettled(stores.map((s) => s.abandon()));
}
