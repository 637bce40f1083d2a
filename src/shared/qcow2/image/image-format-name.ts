/** The disk formats Cowbell reads and writes, by the names qemu-img gives them (-f, -O). */
export type ImageFormat = 'qcow2' | 'raw';

export function isImageFormat(value: string): value is ImageFormat {
  return value === 'qcow2' || value === 'raw';
}
