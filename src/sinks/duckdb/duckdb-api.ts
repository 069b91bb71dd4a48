// @duckdb/node-api and its bindings, loaded by require rather than by an ESM import.
//
// Both are CommonJS packages. An ESM import of one first runs Node's CommonJS export lexer over every
// file it loads, to find named exports: measured on the 2-vCPU VM, `import('@duckdb/node-api')` took
// ~95 ms and `require` ~48 ms. The bindings are loaded at once; node-api only when something calls
// nodeApi() (readers, and a store reading what it holds): the store's writing path needs only the
// bindings (lean.ts). Types still come from the packages' own declarations.
import { createRequire } from 'node:module';
import type * as NodeApi from '@duckdb/node-api';
import type Bindings from '@duckdb/node-bindings';

const require = createRequire(import.meta.url);

export const duckdbBindings: typeof Bindings = require('@duckdb/node-bindings');

let api: typeof NodeApi | null = null;

/** @duckdb/node-api, loaded on first use (~100-150 ms of ~180 files on the 2-vCPU VM). */
export function nodeApi(): typeof NodeApi {
  api ??= require('@duckdb/node-api') as typeof NodeApi;
  return api;
}
