// Work that must run one piece at a time on one resource (a store's connection, a Delta table's
// writer): each piece starts once the one before has settled, whether it succeeded or failed.

export class Serial {
  private chain: Promise<unknown> = Promise.resolve();

  run<T>(work: () => Promise<T>): Promise<T> {
    const run = this.chain.then(work, work);
    this.chain = run.catch(() => undefined);
    return run;
  }
}
