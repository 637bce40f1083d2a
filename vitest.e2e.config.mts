import { defineConfig } from 'vitest/config';
import { askMallocForHugePages } from './test/helpers/huge-page-malloc.ts';

askMallocForHugePages();

// End-to-end tests drive a real browser against a real server on real images. Each file starts its
// own server (on a free port, no shared state) and its own Chromium, so two files run side by side:
// one file alone left a third of the two-core CI machine idle while the page waited on a job, and
// two at a time took the run from ~400 s to ~310 s there.
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.test.ts'],
    environment: 'node',
    fileParallelism: true,
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
