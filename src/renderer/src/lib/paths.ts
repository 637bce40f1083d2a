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

export function isAbsolutePath(path: string): boolean {
  return path.startsWith('/') || /^[A-Za-z]:[\\/]/.test(path);
}
