#!/usr/bin/env node
// Builds the dashboard's web page: src/dashboard/web/app.ts bundled (lightweight-charts included) into
// dist/web/app.js, plus index.html and style.css copied beside it. The server serves dist/web/ under a
// strict Content-Security-Policy (script-src 'self'), so everything the page runs must be in app.js.
// Quiet on success; on failure one clear message on stderr and exit 1.
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'src', 'dashboard', 'web');
// `--outdir DIR` builds elsewhere (the page test builds into a temporary folder of its own).
const outArg = process.argv.indexOf('--outdir');
const outDir = outArg > 0 && process.argv[outArg + 1] ? resolve(process.argv[outArg + 1]) : join(root, 'dist', 'web');

function fail(message) {
  process.stderr.write(`build-web: ${message}\n`);
  process.exit(1);
}

let esbuild;
try {
  esbuild = await import('esbuild');
} catch (err) {
  fail(`cannot load esbuild (${err instanceof Error ? err.message : String(err)}); run \`npm install\` (it is a devDependency)`);
}

await mkdir(outDir, { recursive: true });

try {
  await esbuild.build({
    entryPoints: [join(srcDir, 'app.ts')],
    outfile: join(outDir, 'app.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    minify: true,
    sourcemap: true,
    legalComments: 'eof',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'silent',
    absWorkingDir: root,
  });
} catch (err) {
  const errors = err && Array.isArray(err.errors) ? err.errors : [];
  const lines = errors.map((e) => {
    const where = e.location ? `${relative(root, join(root, e.location.file))}:${e.location.line}:${e.location.column}: ` : '';
    return `  ${where}${e.text}`;
  });
  fail(`bundling src/dashboard/web/app.ts failed${lines.length ? `:\n${lines.join('\n')}` : `: ${err instanceof Error ? err.message : String(err)}`}`);
}

for (const file of ['index.html', 'style.css']) {
  try {
    await copyFile(join(srcDir, file), join(outDir, file));
  } catch (err) {
    fail(`cannot copy src/dashboard/web/${file} to dist/web/: ${err instanceof Error ? err.message : String(err)}`);
  }
}
