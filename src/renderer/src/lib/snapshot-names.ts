/** A name for a new snapshot, proposed from the date: "2025-11-25 15:48", made unique among the disk's names. */
export function proposeSnapshotName(now: Date, existingNames: Iterable<string>): string {
  const pad = (value: number): string => String(value).padStart(2, '0');
  const base = `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())} ${pad(now.getHours())}:${pad(now.getMinutes())}`;
  const taken = new Set(existingNames);
  if (!taken.has(base)) return base;
  for (let suffix = 2; ; suffix++) {
    const candidate = `${base} (${suffix})`;
    if (!taken.has(candidate)) return candidate;
  }
}

/** Why a snapshot name cannot be used, or null when it can. */
export function snapshotNameProblem(name: string, existingNames: Iterable<string>, ownName: string | null = null): string | null {
  const trimmed = name.trim();
  if (trimmed === '') return 'Give the snapshot a name.';
  if (trimmed.length > 1024) return 'Names are at most 1024 characters long.';
  if (trimmed !== ownName && new Set(existingNames).has(trimmed)) return 'A snapshot with this name already exists.';
  // The engine's rules (snapshots.ts assertNewName), said before the dialog is sent.
  if (trimmed !== ownName && trimmed === 'current') return '“current” stands for the disk’s current state; choose another name.';
  if (trimmed !== ownName && /^snapshot\.(name|id)=/s.test(trimmed)) return 'This name reads as a reference to another snapshot; choose another name.';
  return null;
}

/**
 * A name that is another snapshot's id: allowed (qemu-img allows it, and Cowbell tells them apart),
 * but qemu-img and QEMU look ids up first, so `qemu-img snapshot -a 1` would take the other one.
 * Said as a caution, or null.
 */
export function snapshotNameIdCaution(name: string, snapshots: Iterable<{ id: string; name: string }>, ownId: string | null = null): string | null {
  const trimmed = name.trim();
  for (const snapshot of snapshots) {
    if (snapshot.id === ownId || snapshot.id !== trimmed) continue;
    return `“${trimmed}” is the id of snapshot “${snapshot.name}”: qemu-img and QEMU read it as that id first (qemu-img snapshot -a ${trimmed} would revert to “${snapshot.name}”). Cowbell tells them apart.`;
  }
  return null;
}
