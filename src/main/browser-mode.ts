import { createBackend } from './backend.ts';
import { startBrowserServer } from './browser-server.ts';

export interface BrowserModeOptions {
  rendererDir: string;
  workerFile: string;
  version: string;
  initialPaths: string[];
  port?: number;
  /** Tests only: see worker/test-gate.ts. */
  treeGate?: string;
}

export interface BrowserMode {
  url: string;
  close(): Promise<void>;
}

/** Cowbell without Electron: the same backend behind the browser-mode server. */
export async function startBrowserMode(options: BrowserModeOptions): Promise<BrowserMode> {
  const backend = createBackend({
    workerFile: options.workerFile,
    mode: 'browser',
    version: options.version,
    treeGate: options.treeGate,
    initialPaths: () => options.initialPaths,
    // A browser page cannot show a native dialog; it offers a path field instead.
    openDialog: async () => [],
  });
  try {
    const server = await startBrowserServer({
      rendererDir: options.rendererDir,
      handle: backend.handle,
      events: backend.events,
      port: options.port,
    });
    return {
      url: server.url,
      async close() {
        await server.close();
        await backend.close();
      },
    };
  } catch (error) {
    await backend.close();
    throw error;
  }
}
