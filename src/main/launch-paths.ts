import { isAbsolute, resolve } from 'node:path';

/**
 * The image paths in a launch's arguments (after Electron's own): switches are skipped, relative
 * paths are taken from the launch's working folder.
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
    paths.push(isAbsolute(arg) ? arg : resolve(workingDirectory, arg));
  }
  return paths;
}
