import { startBrowserMode } from '../../src/main/browser-mode.ts';
import { packageVersion, projectPath } from './project.ts';

/** Starts browser mode, prints its address as the one stdout line, and stops cleanly on a signal. */
export async function runBrowserMode(options: { port: number; images: string[] }): Promise<void> {
  const mode = await startBrowserMode({
    rendererDir: projectPath('out/renderer'),
    // Node 24 runs the TypeScript worker as it is; the Electron build uses its bundled chunk.
    workerFile: projectPath('src/main/worker/worker.ts'),
    version: packageVersion(),
    initialPaths: options.images,
    port: options.port,
    // End-to-end tests only: hold the full tree job until this file exists (src/main/worker/test-gate.ts).
    treeGate: process.env.COWBELL_TEST_TREE_GATE || undefined,
  });
  process.stdout.write(`Cowbell (browser mode): ${mode.url}\n`);
  const stop = (): void => {
    void mode.close().finally(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
