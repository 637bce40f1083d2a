import { defineConfig } from 'vitest/config';

// End-to-end tests drive a real browser against a real server on real images: one file at a time.
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.test.ts'],
    environment: 'node',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
