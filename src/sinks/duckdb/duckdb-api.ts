// @duckdb/node-api and its bindings, loaded by require rather than by an ESM import.
//
// Both are CommonJS packages. An ESM import of one first runs Node's CommonJS export lexer over every
// file it loads, to find named exports: measured on the 2-vCPU VM, `import('@duckdb/node-api')` took
// ~95 ms and `require` ~48 ms, on the path of every run that writes to DuckDB (the store's worker
// loads it before it can open the file). Types still come from the packages' own declarations.
import { createRequire } from 'node:module';
import type * as NodeApi from '@duckdb/node-api';
import type Bindings from '@duckdb/node-bindings';

const require = createRequire(import.meta.url);

export const duckdbApi: typeof NodeApi = require('@duckdb/node-api');
export const duckdbBindings: typeof Bindings = require('@duckdb/node-bindings');
