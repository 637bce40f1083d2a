/** Every filesystem reader, in the order volumes are probed. Each reader adds its one line here. */
import { extReader } from './ext/ext-filesystem.ts';
import type { FilesystemReader } from './filesystem.ts';

export const FILESYSTEM_READERS: readonly FilesystemReader[] = [
  extReader,
];
