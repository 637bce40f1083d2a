/**
 * Where the running command line lives: from its TypeScript sources, or from the bundle
 * (scripts/build-cli.ts) whose entry sets the helper threads' modules to the bundled ones (the
 * engine's defaults name the source files, which a bundle does not ship next to it).
 */
export const cliRuntime: { compressWorker: URL | undefined; earlyVerifyWorker: URL | undefined } = { compressWorker: undefined, earlyVerifyWorker: undefined };
