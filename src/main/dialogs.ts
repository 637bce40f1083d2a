import { dialog, type BrowserWindow, type OpenDialogOptions } from 'electron';

/** The native Open dialog for disk images; an empty list when the user cancels. */
export async function chooseImages(parent: BrowserWindow | null): Promise<string[]> {
  const options: OpenDialogOptions = {
    title: 'Open disk images',
    properties: ['openFile', 'multiSelections'],
    filters: [
      { name: 'Disk images', extensions: ['qcow2', 'qcow', 'img'] },
      { name: 'All files', extensions: ['*'] },
    ],
  };
  const result = parent === null ? await dialog.showOpenDialog(options) : await dialog.showOpenDialog(parent, options);
  return result.canceled ? [] : result.filePaths;
}
