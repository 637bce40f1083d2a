/**
 * Path pieces for display only; main owns real path handling. A path that starts with '/' is a
 * POSIX one, where a backslash is part of a name (a Linux file may be called `we\ird.qcow2`); any
 * other (`C:\…`, `\\server\…`) is a Windows one, where both separate folders.
 */
function lastSeparator(path: string): number {
  return path.startsWith('/') ? path.lastIndexOf('/') : Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
}

export function baseName(path: string): string {
  const trimmed = path.startsWith('/') ? path.replace(/\/+$/, '') : path.replace(/[\\/]+$/, '');
  return trimmed.slice(lastSeparator(trimmed) + 1) || trimmed || path;
}

/** The folder part, with its trailing separator: "/a/b/c.qcow2" → "/a/b/". */
export function folderOf(path: string): string {
  const cut = lastSeparator(path);
  return cut >= 0 ? path.slice(0, cut + 1) : '';
}

/** The last part of a path inside a guest's state, which is always '/'-separated (a backslash is part of a name). */
export function guestBaseName(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}

/** Whether a host file name holds a folder separator: '/' everywhere, and '\\' on Windows. */
export function hasFolderSeparator(name: string, platform: string | undefined): boolean {
  return name.includes('/') || (platform === 'win32' && name.includes('\\'));
}

/**
 * A POSIX path written the shortest way that names the same file without asking the file system:
 * repeated slashes and `.` segments go (`/vms//a/./disk.qcow2` → `/vms/a/disk.qcow2`); `..` stays
 * (past a symlink it need not mean the folder above). Other paths are kept as typed. The library
 * opened one file several times under such spellings.
 */
export function tidyPath(path: string): string {
  if (!path.startsWith('/')) return path;
  const parts = path.split('/').filter((part) => part !== '' && part !== '.');
  return `/${parts.join('/')}`;
}

export function isAbsolutePath(path: string): boolean {
  return path.startsWith('/') || /^[A-Za-z]:[\\/]/.test(path);
}

/** A path's folders, outermost first, without the root or drive: "/a/b/c.qcow2" → ["a", "b"]. */
function folderNames(path: string): string[] {
  const folder = folderOf(path);
  const parts = path.startsWith('/') ? folder.split('/') : folder.split(/[\\/]/);
  return parts.filter((part) => part !== '' && !/^[A-Za-z]:$/.test(part));
}

/**
 * For paths that share a file name, the fewest last folders that tell each apart ("a/vms" beside
 * "b/vms"); a path whose name no other shares gets none. The sidebar shows them after the name,
 * so two disks called `disk.qcow2` are not two identical lines.
 */
export function distinguishingFolders(paths: readonly string[]): Map<string, string> {
  const byName = new Map<string, string[]>();
  for (const path of new Set(paths)) {
    const group = byName.get(baseName(path)) ?? [];
    group.push(path);
    byName.set(baseName(path), group);
  }
  const hints = new Map<string, string>();
  for (const group of byName.values()) {
    if (group.length < 2) continue;
    const folders = group.map(folderNames);
    const deepest = Math.max(...folders.map((names) => names.length));
    const tail = (names: string[], depth: number): string => names.slice(-depth).join('/');
    let depth = 1;
    while (depth < deepest && new Set(folders.map((names) => tail(names, depth))).size < group.length) depth++;
    // Folders that end alike all the way up (C:\\vms and D:\\vms) are told apart by the whole folder.
    const apart = new Set(folders.map((names) => tail(names, depth))).size === group.length;
    group.forEach((path, index) => {
      const names = folders[index] ?? [];
      const separator = path.startsWith('/') ? '/' : '\\';
      const shown = names.slice(-depth).join(separator);
      hints.set(path, !apart || names.length === 0 ? folderOf(path) : `${names.length > depth ? `…${separator}` : ''}${shown}`);
    });
  }
  return hints;
}
