/**
 * Where a dialog writes a new disk file from an open one (Save as New Disk, Save What Can Be Read):
 * a folder (the disk's own to start with), a file name proposed for the format, and the format;
 * a name still ending in the other format's extension follows a change of format. `problem` says
 * in words why the target cannot be used yet (null when it can, or while nothing is asked).
 */
import { computed, ref, watch, type Ref } from 'vue';
import type { PathStat } from '../../../shared/ipc/contract.ts';
import { request } from '../api.ts';
import { folderOf, isAbsolutePath } from '../lib/paths.ts';

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
  // Whether something already has the target's name, asked of main as it changes (the job would
  // refuse it too, but only after the passphrase was asked for and tried).
  const taken = ref<string | null>(null);
  let statSequence = 0;
  watch(
    [target, asking],
    async ([path, open]) => {
      const sequence = ++statSequence;
      taken.value = null;
      if (!open || !isAbsolutePath(path)) return;
      try {
        const [stat]: PathStat[] = await request('path.stat', { paths: [path] });
        if (sequence === statSequence && stat !== undefined && stat.kind !== 'missing') taken.value = path;
      } catch {
        // Unknown: the job says so if the name is taken.
      }
    },
    { immediate: true },
  );

  const problem = computed(() => {
    if (!asking.value) return null;
    if (!isAbsolutePath(folder.value.trim())) return 'Give the full path of a folder, starting with /.';
    const trimmed = name.value.trim();
    if (trimmed === '' || /[\\/]/.test(name.value) || trimmed === '.' || trimmed === '..') return 'Give the new disk a file name (without a folder).';
    // Linux, macOS and Windows file systems take names of at most 255 bytes (or UTF-16 units).
    if (new TextEncoder().encode(trimmed).length > MAX_NAME_BYTES) return `That file name is too long (at most ${MAX_NAME_BYTES} bytes); choose a shorter one.`;
    if (target.value === diskPath) return 'That is this disk’s own file; choose another name.';
    if (taken.value === target.value) return 'Something by that name is already there; choose another name.';
    return null;
  });

  return { format, folder, name, target, problem };
}
