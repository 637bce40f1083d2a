/**
 * Where a dialog will write a new file (Save as New Disk, Save What Can Be Read, Restore): asked of
 * main as the folder and name change, so that a missing folder or a name already taken is said
 * beside the fields, before the job starts (the job refuses them too, but only once started, and
 * its end shows only Close: what was typed was lost).
 */
import { ref, watch, type Ref } from 'vue';
import type { PathStat } from '../../../shared/ipc/contract.ts';
import { request } from '../api.ts';
import { isAbsolutePath } from '../lib/paths.ts';

/** What is said of a name something already has (the folder's problems are said of the folder). */
export const NAME_TAKEN = 'Something by that name is already there; choose another name.';

/** The problem with writing `target` (in `folder`) now, in words; null when there is none, or nothing is known yet. */
export function useTargetPlace(target: Readonly<Ref<string>>, folder: Readonly<Ref<string>>, asking: Readonly<Ref<boolean>>): Ref<string | null> {
  const problem = ref<string | null>(null);
  let sequence = 0;
  watch(
    [target, folder, asking],
    async ([path, folderPath, open]) => {
      const mine = ++sequence;
      problem.value = null;
      const trimmed = folderPath.trim();
      const where = trimmed.length > 1 ? trimmed.replace(/[\\/]+$/, '') : trimmed;
      if (!open || !isAbsolutePath(path) || !isAbsolutePath(where)) return;
      try {
        const [folderStat, targetStat]: PathStat[] = await request('path.stat', { paths: [where, path] });
        if (mine !== sequence) return;
        if (folderStat?.kind === 'missing') problem.value = 'That folder does not exist.';
        else if (folderStat !== undefined && folderStat.kind !== 'folder') problem.value = 'That is not a folder.';
        else if (targetStat !== undefined && targetStat.kind !== 'missing') problem.value = NAME_TAKEN;
      } catch {
        // Unknown: the job says so if the place cannot be used.
      }
    },
    { immediate: true },
  );
  return problem;
}
