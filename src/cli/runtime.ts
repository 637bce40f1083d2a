/**
 * Where the running command line lives: from its TypeScript sources, or from the bundle
 * (scripts/build-cli.ts) whose entry sets `compressWorker` to the bundled compressing thread's
 * module (the engine's default names the source file, which a bundle does not ship next to it).
 */
export const cliRuntime: { compressWorker: URL | undefined } = { compressWorker: undefined };
