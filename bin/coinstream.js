#!/usr/bin/env node
// Entry point: the compiled JavaScript in dist/, which `npm install` builds (the prepare script) and
// `npm run build` rebuilds. No TypeScript loader at run time.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('coinstream: not built yet: run `npm run build` (npm install does it)\n');
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
