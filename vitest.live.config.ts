import { defineConfig } from 'vitest/config';

// Tests that need the real internet (live exchange feeds). Not part of `npm test`.
export default defineConfig({ test: { include: ['test/**/*.live.test.ts'], testTimeout: 60_000 } });
