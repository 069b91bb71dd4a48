// V8 assumes no ArrayBuffer is ever detached until one is, and optimised code relies on it (a typed
// array's length is not checked again). The first detach in a thread (the first batch whose buffers
// are transferred to the DuckDB worker, say) voids that assumption and throws away every function
// compiled with it: measured in a 1M-trade replay, the scanner, the replay's event loop, the engine's
// ingest and the column builders were all compiled a second time (~50-90 ms of compiler time each)
// a fraction of a second into the run. Detaching one empty buffer at the start, before anything is
// compiled, makes every function compile once, with the check.

/** Detaches an empty ArrayBuffer in this thread: call it first thing in a thread that will transfer buffers to another. */
export function detachOneBufferEarly(): void {
  const empty = new ArrayBuffer(0);
  structuredClone(empty, { transfer: [empty] });
}
