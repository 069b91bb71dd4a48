// One sink shared by several pipelines (`coinstream process` runs one per Kafka partition, each with
// its own job): opened by the first, closed by the last, and one write at a time, because a store
// writes a batch as one transaction on one connection. Composition, like RetryingSink.
import { Serial } from '../core/serial.js';
import type { OutputBatch, Sink, StoredProgress } from './contract.js';

export class SharedSink implements Sink {
  readonly name: string;
  private users = 0;
  private opening: Promise<void> | null = null;
  /** Every call on the inner sink, in order. */
  private readonly serial = new Serial();

  constructor(private readonly inner: Sink) {
    this.name = inner.name;
  }

  async open(): Promise<void> {
    this.users++;
    this.opening ??= this.inner.open();
    try {
      await this.opening;
    } catch (err) {
      this.users--;
      this.opening = null;
      throw err;
    }
  }

  write(batch: OutputBatch): Promise<void> {
    return this.serial.run(() => this.inner.write(batch));
  }

  async close(): Promise<void> {
    if (--this.users > 0) return;
    this.opening = null;
    await this.serial.run(() => this.inner.close());
  }

  get readProgress(): Sink['readProgress'] {
    const read = this.inner.readProgress?.bind(this.inner);
    return read && ((job: string) => this.serial.run<StoredProgress | null>(() => read(job)));
  }

  get clearJob(): Sink['clearJob'] {
    const clear = this.inner.clearJob?.bind(this.inner);
    return clear && ((job: string) => this.serial.run<void>(() => clear(job)));
  }

  get jobs(): Sink['jobs'] {
    const jobs = this.inner.jobs?.bind(this.inner);
    return jobs && (() => this.serial.run<string[]>(() => jobs()));
  }

}
