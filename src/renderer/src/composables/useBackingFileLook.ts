/**
 * What a backing file named in a dialog looks like, for its warnings: a qcow2 image (and whether it
 * is encrypted) or not one (read as raw). A file the dialog already knows (an open disk, a file of
 * the chain) is taken from `known`; another is read in the background once the path stops changing,
 * and a read that an edit overtook is dropped, as is one the dialog's closing overtook (a path typed
 * just before was still read, in a job started after the dialog was gone). A path that is not
 * absolute is not read.
 */
import { onScopeDispose, ref, watch, type Ref } from 'vue';
import { toApiError } from '../lib/api-error.ts';
import { isAbsolutePath } from '../lib/paths.ts';
import { useJobsStore } from '../stores/jobs.ts';

export interface BackingFileLook {
  format: 'qcow2' | 'raw' | null;
  encrypted: boolean;
}

/**
 * Why `format` cannot be recorded for a file that looks like `looksLike`, or null: a file that is not
 * a qcow2 image recorded as qcow2 leaves a disk that neither QEMU nor Cowbell can open (with
 * "only change the name", nothing checks it). The other way (a qcow2 image read as raw) is a warning:
 * it opens, showing the qcow2 structures as data.
 */
export function backingFormatRefusal(looksLike: BackingFileLook['format'], format: 'qcow2' | 'raw'): string | null {
  return looksLike === 'raw' && format === 'qcow2' ? 'The backing file is not a qcow2 image: recorded as qcow2, the disk could not be opened. Choose raw.' : null;
}

/** How long the path must stay unchanged before it is read, not at every key. */
export const BACKING_READ_DELAY_MS = 300;

export function useBackingFileLook(path: Ref<string>, readTitle: string, known: (path: string) => BackingFileLook | undefined) {
  const jobs = useJobsStore();
  const looksLike = ref<BackingFileLook['format']>(null);
  const encrypted = ref(false);
  /** Why the path names no file to build on (nothing there, or a folder), once read; null otherwise. */
  const unusable = ref<string | null>(null);
  let reads = 0;
  let waiting: ReturnType<typeof setTimeout> | undefined;
  onScopeDispose(() => {
    clearTimeout(waiting);
    reads++;
  });
  watch(
    path,
    (value) => {
      const trimmed = value.trim();
      const read = ++reads;
      clearTimeout(waiting);
      looksLike.value = null;
      encrypted.value = false;
      unusable.value = null;
      const look = known(trimmed);
      if (look !== undefined) {
        looksLike.value = look.format;
        encrypted.value = look.encrypted;
        return;
      }
      if (!isAbsolutePath(trimmed)) return;
      waiting = setTimeout(() => {
        if (read !== reads) return;
        void jobs
          .run('image.info', trimmed, {}, { title: readTitle, background: true })
          .then((info) => {
            if (read !== reads) return;
            looksLike.value = 'qcow2';
            encrypted.value = info.encrypted === true;
          })
          .catch((error: unknown) => {
            if (read !== reads) return;
            const code = toApiError(error).code;
            if (code === 'BAD_MAGIC') looksLike.value = 'raw';
            else if (code === 'NOT_FOUND') unusable.value = 'There is no file at this path.';
            else if (code === 'NOT_A_FILE') unusable.value = 'That is not a file.';
          });
      }, BACKING_READ_DELAY_MS);
    },
    { immediate: true },
  );
  return { looksLike, encrypted, unusable };
}
