/**
 * Opens a disk's states for files-diff with unchangedFolder either watched (each folder it vouched
 * for recorded in `vouched`) or hidden (the full walk): the two results must be equal.
 */
import { openStateFiles, type StateFiles } from '../../src/shared/qcow2/files/state-files.ts';

export function vouchingOpener(disk: string, shortcut: boolean, vouched: string[] = []): (state: string) => Promise<StateFiles> {
  return async (state) => {
    const files = await openStateFiles(disk, state);
    const unchangedFolder = files.unchangedFolder?.bind(files);
    Object.assign(files, {
      unchangedFolder: shortcut && unchangedFolder ? async (...args: Parameters<typeof unchangedFolder>) => {
        const found = await unchangedFolder(...args);
        if (found !== null) vouched.push(args[0]);
        return found;
      } : undefined,
    });
    return files;
  };
}
