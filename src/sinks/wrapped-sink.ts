// The base of the sink wrappers (retries, no archive): everything passes through to the wrapped sink
// unless the wrapper overrides it. readProgress/clearJob/startsEmpty are present exactly when the wrapped sink has
// them, because the pipeline asks whether a sink keeps progress by looking for them.
import type { OutputBatch, Sink } from './contract.js';

export abstract class WrappedSink implements Sink {
  readonly name: string;

  constructor(protected readonly inner: Sink) {
    this.name = inner.name;
  }

  open(): Promise<void> {
    return this.inner.open();
  }

  write(batch: OutputBatch): Promise<void> {
    return this.inner.write(batch);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  get readProgress(): Sink['readProgress'] {
    return this.inner.readProgress?.bind(this.inner);
  }

  get clearJob(): Sink['clearJob'] {
    return this.inner.clearJob?.bind(this.inner);
  }

  get jobs(): Sink['jobs'] {
    return this.inner.jobs?.bind(this.inner);
  }

  get startsEmpty(): Sink['startsEmpty'] {
    return this.inner.startsEmpty?.bind(this.inner);
  }
}
