/**
 * Where a dialog writes a new disk file from an open one (Save as New Disk, Save What Can Be Read):
 * a folder (the disk's own to start with), a file name proposed for the format, and the format;
 * a name still ending in the other format's extension follows a change of format. `problem` says
 * in words why the target cannot be used yet (null when it can, or while nothing is asked).
 */
import { computed, ref, watch, type Ref } from 'vue';
import { folderOf, isAbsolutePath } from '../lib/paths.ts';
import { useTargetPlace } from './useTargetPlace.ts';

export const NEW_DISK_EXTENSIONS = { qcow2: '.qcow2', raw: '.img' } as const;
export type NewDiskFormat = keyof typeof NEW_DISK_EXTENSIONS;
const MAX_NAME_BYTES = 255;

export function useNewDiskTarget(diskPath: string, proposeName: (format: NewDiskFormat) => string, asking: Ref<boolean>) {
  const format = ref<NewDiskFormat>('qcow2');
  const folder = ref(folderOf(diskPath));
  const name = ref(proposeName(format.value));

  watch(format, (next, previous) => {
    const old = NEW_DISK_EXTENSIONS[previous];
    if (name.value.endsWith(old)) name.value = `${name.value.slice(0, -old.length)}${NEW_DISK_EXTENSIONS[next]}`;
  });

  const target = computed(() => {
    const base = folder.value.trim();
    return `${/[\\/]$/.test(base) ? base : `${base}/`}${name.value.trim()}`;
  });
  // The folder there and the name free, asked of main as they change (the job would refuse them
  // too, but only after the passphrase was asked for and tried).
  const placeProblem = useTargetPlace(target, folder, asking);

  const problem = computed(() => {
    if (!asking.value) return null;
    if (!isAbsolutePath(folder.value.trim())) return 'Give the full path of a folder, starting with /.';
    const trimmed = name.value.trim();
    if (trimmed === '' || /[\\/]/.test(name.value) || trimmed === '.' || trimmed === '..') return 'Give the new disk a file name (without a folder).';
    // Linux, macOS and Windows file systems take names of at most 255 bytes (or UTF-16 units).
    if (new TextEncoder().encode(trimmed).length > MAX_NAME_BYTES) return `That file name is too long (at most ${MAX_NAME_BYTES} bytes); choose a shorter one.`;
    if (target.value === diskPath) return 'That is this disk’s own file; choose another name.';
    return placeProblem.value;
  });

  return { format, folder, name, target, problem };
}
