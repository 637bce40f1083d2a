/**
 * The C library's calls Node does not offer (fcntl's OFD locks, lseek, sync_file_range), through
 * koffi — loaded once, on first need, and only on Linux, where those calls mean what the engine
 * expects. Each caller decides what to do without them.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Koffi from 'koffi';

export interface Libc {
  koffi: typeof Koffi;
  /** The running program and its libraries (dlopen(NULL)), whatever the C library is called. */
  library: Koffi.LibraryHandle;
}

let loaded: Libc | Error | undefined;

/** The C library, or why it cannot be had here. */
export function libc(): Libc | Error {
  if (loaded !== undefined) return loaded;
  if (process.platform !== 'linux') {
    loaded = new Error(`not on Linux (${process.platform})`);
    return loaded;
  }
  try {
    const koffi = prebuiltKoffi() ?? (createRequire(import.meta.url)('koffi') as typeof Koffi);
    loaded = { koffi, library: koffi.load(null) };
  } catch (error) {
    loaded = error instanceof Error ? error : new Error(String(error));
  }
  return loaded;
}

/** The C library if an earlier call loaded it, without loading it: null otherwise. */
export function loadedLibc(): Libc | null {
  return loaded === undefined || loaded instanceof Error ? null : loaded;
}

/** Where a package is installed as seen from a folder, or null when it is not found there. */
export type PackageFinder = (name: string, from: string) => string | null;

/**
 * The first node_modules/NAME with a package.json in `from` or a folder above it: where Node's
 * resolution looks. It takes ~0.1 ms where a first require.resolve takes 4-5 ms (setting up the
 * CommonJS loader and reading package exports, measured here); a layout it misses (NODE_PATH, an
 * archive) leaves the loading to require.
 */
export const nodeModulesFolder: PackageFinder = (name, from) => {
  for (let folder = from; ; folder = dirname(folder)) {
    const candidate = join(folder, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(folder) === folder) return null;
  }
};

/**
 * koffi's prebuilt glibc binary for this machine, loaded directly; null when it cannot be (another
 * layout, not glibc, a version that is not koffi's), and koffi's own loader is used.
 *
 * Why: koffi's loader (koffi 3.3) copies the whole of node:util and node:fs into ES-module form,
 * which loads Node's streams, worker_threads and two dozen more internal modules: 10-14 ms of a
 * 70 ms `cowbell info`. The binary itself loads in about 1-2 ms, and is the same module koffi's
 * loader returns (it only adds deprecation warnings to old names Cowbell does not use).
 */
export function prebuiltKoffi(findPackage: PackageFinder = nodeModulesFolder, from = dirname(fileURLToPath(import.meta.url))): typeof Koffi | null {
  try {
    // The glibc build, only into a process that runs on glibc (musl would refuse it, or worse).
    if (!readFileSync('/proc/self/maps', 'latin1').includes('/libc.so.6')) return null;
    const koffiFolder = findPackage('koffi', from);
    if (koffiFolder === null) return null;
    const koffiVersion = packageVersion(join(koffiFolder, 'package.json'));
    // An optional dependency of koffi: found from koffi's own folder, as Node resolves it.
    const binaryFolder = findPackage(`@koromix/koffi-linux-${process.arch}`, koffiFolder);
    if (binaryFolder === null || packageVersion(join(binaryFolder, 'package.json')) !== koffiVersion) return null;
    const module = { exports: {} as { version?: unknown } };
    process.dlopen(module, join(binaryFolder, `linux_${process.arch}`, 'koffi.node'));
    return module.exports.version === koffiVersion ? (module.exports as unknown as typeof Koffi) : null;
  } catch {
    return null;
  }
}

function packageVersion(packageJson: string): unknown {
  const parsed: unknown = JSON.parse(readFileSync(packageJson, 'utf8'));
  return typeof parsed === 'object' && parsed !== null && 'version' in parsed ? parsed.version : undefined;
}
