import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The image paths in a launch's arguments (after Electron's own): switches are skipped, relative
 * paths are taken from the launch's working folder, and file:// URLs (what a desktop entry's %U
 * may hand over) become paths.
 */
export function imagePathsFromArgs(args: readonly string[], workingDirectory: string): string[] {
  const paths: string[] = [];
  let afterSeparator = false;
  for (const arg of args) {
    if (!afterSeparator && arg === '--') {
      afterSeparator = true;
      continue;
    }
    if (arg === '' || (!afterSeparator && arg.startsWith('-'))) continue;
    const path = fromFileUrl(arg) ?? arg;
    paths.push(isAbsolute(path) ? path : resolve(workingDirectory, path));
  }
  return paths;
}

/**
 * A launch's own arguments in a process's argv. Packaged, argv is [cowbell, ...]. Unpackaged it is
 * [electron, switches..., app folder, ...]: the switches (Chromium's, or Playwright's --no-sandbox)
 * come before the app folder, so the app folder is the first argument that is not one.
 */
export function launchArguments(argv: readonly string[], isPackaged: boolean): string[] {
  const rest = argv.slice(1);
  if (isPackaged) return rest;
  const appIndex = rest.findIndex((arg) => !arg.startsWith('-'));
  return appIndex < 0 ? [] : rest.slice(appIndex + 1);
}

function fromFileUrl(arg: string): string | null {
  if (!arg.toLowerCase().startsWith('file://')) return null;
  try {
    return fileURLToPath(arg);
  } catch {
    return null;
  }
}
