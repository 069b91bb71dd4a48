// Reads several sources at once, yielding their events in the order they arrive.
import type { SourceEvent } from './contract.js';

export async function* mergeEvents(streams: AsyncIterable<SourceEvent>[]): AsyncGenerator<SourceEvent> {
  if (streams.length === 1) {
    yield* streams[0];
    return;
  }
  const iterators = streams.map((s) => s[Symbol.asyncIterator]());
  const next = (i: number) => iterators[i].next().then((result) => ({ i, result }));
  const pending = new Map<number, Promise<{ i: number; result: IteratorResult<SourceEvent> }>>();
  iterators.forEach((_, i) => pending.set(i, next(i)));
  try {
    while (pending.size > 0) {
      const { i, result } = await Promise.race(pending.values());
      if (result.done) {
        pending.delete(i);
        continue;
      }
      pending.set(i, next(i));
      yield result.value;
    }
  } finally {
    // Closing early (abort, --batches): let every source release its socket or file.
    await Promise.allSettled(iterators.map((it) => it.return?.()));
  }
}
