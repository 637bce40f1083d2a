/**
 * Electron's executable for `npm start`. Electron 45's package has no install script: it downloads
 * its binary the first time something asks (node_modules/electron/index.js runs install.js). So
 * when the binary is missing, `npm start` runs Electron's own installer, its progress on the
 * terminal; only when that fails (no network, a blocked download) does it say why in one line, and
 * the caller starts browser mode instead.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from './project.ts';

/** Where Electron's package is (tests point COWBELL_ELECTRON_DIR at a stand-in with its own install.js). */
export function electronPackageDir(): string {
  return process.env.COWBELL_ELECTRON_DIR ?? projectPath('node_modules/electron');
}

/** The executable the package's install step put there, or null. */
export function installedElectronBinary(packageDir = electronPackageDir()): string | null {
  const pathFile = join(packageDir, 'path.txt');
  if (!existsSync(pathFile)) return null;
  const binary = join(packageDir, 'dist', readFileSync(pathFile, 'utf8').trim());
  return existsSync(binary) ? binary : null;
}

export type ElectronLookup = { binary: string } | { binary: null; reason: string };

/** The installed executable, or Electron's installer run once to fetch it; the reason when there is none. */
export function ensureElectronBinary(packageDir = electronPackageDir()): ElectronLookup {
  const installed = installedElectronBinary(packageDir);
  if (installed !== null) return { binary: installed };
  const installer = join(packageDir, 'install.js');
  if (!existsSync(installer)) return { binary: null, reason: `Electron's installer is missing (${installer}); run npm ci` };
  console.log("Electron's binary is not installed yet; downloading it (once)…");
  // Progress goes to the terminal as it comes; errors are kept to say in one line what went wrong.
  const run = spawnSync(process.execPath, [installer], { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' });
  const binary = installedElectronBinary(packageDir);
  if (run.status === 0 && binary !== null) return { binary };
  return { binary: null, reason: failureReason(run.stderr ?? '', run.error) };
}

/** The line of the installer's output that names the cause ("fetch failed", "getaddrinfo ENOTFOUND …"), or a fallback. */
function failureReason(stderr: string, error: Error | undefined): string {
  if (error !== undefined) return `the installer could not run (${error.message})`;
  const lines = stderr.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('at '));
  const named = lines.find((line) => /error|fail|ENOTFOUND|ECONN|EAI_AGAIN|ETIMEDOUT|certificate/i.test(line)) ?? lines[0];
  return named === undefined ? 'the download did not finish' : `the download failed: ${named}`;
}
