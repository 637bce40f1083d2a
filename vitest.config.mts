import vue from '@vitejs/plugin-vue';
import { defineConfig } from 'vitest/config';

// Unit tests in three projects. Renderer tests get happy-dom through their project rather than a
// per-file `// @vitest-environment` comment, so no component test can forget it.
export default defineConfig({
  plugins: [vue()],
  test: {
    projects: [
      { extends: true, test: { name: 'engine', include: ['test/engine/**/*.test.ts'], environment: 'node' } },
      { extends: true, test: { name: 'main', include: ['test/main/**/*.test.ts'], environment: 'node' } },
      { extends: true, test: { name: 'cli', include: ['test/cli/**/*.test.ts'], environment: 'node' } },
      { extends: true, test: { name: 'renderer', include: ['test/renderer/**/*.test.ts'], environment: 'happy-dom' } },
    ],
  },
});
