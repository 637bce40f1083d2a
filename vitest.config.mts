import { availableParallelism } from 'node:os';
import vue from '@vitejs/plugin-vue';
import { defineConfig, type Plugin } from 'vitest/config';
import { askMallocForHugePages } from './test/helpers/huge-page-malloc.ts';

// Before the workers start: they, and every tool a test runs, inherit it.
askMallocForHugePages();

const MODULE_PATH = '?modulePath';

/** electron-vite's `import x from './f.ts?modulePath'` (a chunk's path) as the source file's own path. */
function modulePath(): Plugin {
  return {
    name: 'cowbell:module-path',
    enforce: 'pre',
    async resolveId(source, importer) {
      if (!source.endsWith(MODULE_PATH)) return null;
      const target = await this.resolve(source.slice(0, -MODULE_PATH.length), importer);
      return target === null ? null : `\0module-path:${target.id}`;
    },
    load(id) {
      return id.startsWith('\0module-path:') ? `export default ${JSON.stringify(id.slice('\0module-path:'.length))};` : null;
    },
  };
}

// Unit tests in three projects. Renderer tests get happy-dom through their project rather than a
// per-file `// @vitest-environment` comment, so no component test can forget it.
export default defineConfig({
  plugins: [vue(), modulePath()],
  test: {
    // A timeout catches a hang, not a slow run: on two loaded cores (the gate runs files side by side)
    // tests that take 1-3 s alone have taken over 5 s, vitest's default. Speed is the benchmarks' job.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    setupFiles: ['test/helpers/byte-equality.ts'],
    // Vitest's default, one file fewer than the cores, is one file at a time on the two-core CI
    // machine; the files spend much of their time waiting on qemu-img and the disk, so two side by
    // side took the unit run from ~26 to ~8 minutes there (484 s, measured with CI=true).
    maxWorkers: Math.max(2, availableParallelism() - 1),
    projects: [
      { extends: true, test: { name: 'engine', include: ['test/engine/**/*.test.ts'], environment: 'node' } },
      { extends: true, test: { name: 'main', include: ['test/main/**/*.test.ts'], environment: 'node' } },
      { extends: true, test: { name: 'cli', include: ['test/cli/**/*.test.ts'], environment: 'node' } },
      // The theme's stylesheet is read as text (?raw) by the contrast test; vitest leaves other CSS out.
      { extends: true, test: { name: 'renderer', include: ['test/renderer/**/*.test.ts'], environment: 'happy-dom', css: { include: [/styles\/base\.css/] } } },
    ],
  },
});
