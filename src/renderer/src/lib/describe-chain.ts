/** Words for the backing chain view and the results of commit and rebase. */
import { formatBytes } from '../../../shared/format-units.ts';
import type { CommitSummary, RebaseSummary } from '../../../shared/ipc/contract.ts';
import type { BackingChain, ChainFile } from '../../../shared/qcow2/model.ts';

/** The files below the disk, top to bottom (the disk itself is the view's subject). */
export function backingFiles(chain: BackingChain | null): ChainFile[] {
  return chain === null ? [] : chain.files.slice(1);
}

/** One line about a file of the chain: its format, size and what it stores, or why it cannot be read. */
export function describeChainFile(file: ChainFile): string {
  if (file.problem !== null) return file.problem.message;
  const parts: string[] = [];
  if (file.format !== null) parts.push(file.format);
  if (file.virtualSize !== null) parts.push(`${formatBytes(file.virtualSize)} disk`);
  if (file.allocatedBytes !== null) parts.push(`${formatBytes(file.allocatedBytes)} on disk`);
  parts.push(file.snapshots.length === 0 ? 'no snapshots' : `${file.snapshots.length} snapshot${file.snapshots.length === 1 ? '' : 's'}`);
  if (file.encrypted) parts.push('encrypted');
  return parts.join(' · ');
}

/** Why the chain cannot be changed (commit, rebase), or null: a missing or looping file is named. */
export function chainProblem(chain: BackingChain | null): string | null {
  const broken = chain?.files.find((file) => file.problem !== null);
  return broken?.problem?.message ?? null;
}

export function describeCommit(result: CommitSummary): string {
  const into = result.base.split('/').pop() ?? result.base;
  const grown = result.grownFrom === null ? '' : ` (grown from ${formatBytes(result.grownFrom)} to the disk's size first)`;
  return `Wrote ${formatBytes(result.committedBytes)} into ${into}${grown}${result.emptied ? '; the disk is empty now and reads everything from it' : '; the disk keeps its own data'}.`;
}

/** `unsafe`: only the name was changed (-u), nothing compared, so nothing says the disk reads as before. */
export function describeRebase(result: RebaseSummary, unsafe = false): string {
  if (unsafe) return 'Only the backing file’s name was changed, as asked: nothing was compared or copied, so where the disk holds no data of its own it now reads what the new backing file holds.';
  return result.copiedBytes === 0 ? 'The backing file was changed; no data needed copying: the disk reads as before.' : `Copied ${formatBytes(result.copiedBytes)} into the disk so that it reads as before, then changed the backing file.`;
}
