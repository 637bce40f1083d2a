/** Path pieces for display only; main owns real path handling. Handles both / and \ separators. */

export function baseName(path: string): string {
  const trimmed = path.replace(/[\\/]+$/, '');
  return trimmed.slice(Math.max(trimmed.lastIndexOf('/'), trimmed.lastIndexOf('\\')) + 1) || trimmed || path;
}

/** The folder part, with its trailing separator: "/a/b/c.qcow2" → "/a/b/". */
export function folderOf(path: string): string {
  const cut = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
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
