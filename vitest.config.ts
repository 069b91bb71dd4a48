import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Tests that need the real internet are named *.live.test.ts and run only by hand:
    // npx vitest run --config vitest.live.config.ts
    exclude: ['**/node_modules/**', 'test/**/*.live.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: CLI tests spawn node processes; more workers only make them slower.
    maxWorkers: 2,
  },
});
