/**
 * Comparing a Cowbell repair with qemu-img's own repair of a copy: every guest range of every
 * state (the active disk and each snapshot) that qemu-img's repair keeps as it read before the
 * repair must read the same through Cowbell after Cowbell's repair.
 */
import { Qcow2Image } from '../../src/shared/qcow2/image/image.ts';
import { qemuInfo, rawOf } from './qemu.ts';

/** Guest bytes by state ('active', or 'ID/NAME' of a snapshot); null where the state cannot be read. */
export type States = Map<string, Uint8Array | null>;

export const ACTIVE = 'active';

async function orNull(read: () => Promise<Uint8Array>): Promise<Uint8Array | null> {
  try {
    return await read();
  } catch {
    return null;
  }
}

/** Every state as qemu-img reads it (snapshots with an empty id or name cannot be named, so are left out). */
export async function qemuStates(image: string): Promise<States> {
  const states: States = new Map();
  states.set(ACTIVE, await orNull(() => rawOf(image)));
  let snapshots: { id: string; name: string }[];
  try {
    snapshots = (await qemuInfo(image)).snapshots ?? [];
  } catch {
    return states;
  }
  for (const snapshot of snapshots) {
    if (snapshot.id === '' || snapshot.name === '') continue;
    states.set(`${snapshot.id}/${snapshot.name}`, await orNull(() => rawOf(image, { snapshot: snapshot.name })));
  }
  return states;
}

/** Every state as Cowbell's engine reads it, opened the ordinary way (a repaired image must open so). */
export function cowbellStates(image: string): States {
  const states: States = new Map();
  const opened = Qcow2Image.open(image, { readOnly: true, openBacking: false });
  try {
    states.set(ACTIVE, opened.read(0, opened.virtualSize));
    for (const snapshot of opened.snapshots) {
      try {
        const reader = opened.snapshotReader(snapshot);
        const bytes = new Uint8Array(reader.virtualSize);
        reader.readInto(bytes, 0);
        states.set(`${snapshot.id}/${snapshot.name}`, bytes);
      } catch {
        states.set(`${snapshot.id}/${snapshot.name}`, null);
      }
    }
  } finally {
    opened.close();
  }
  return states;
}

/** For each state, the reference is what qemu read from the damaged image, or (where it could not) from the image before the damage. */
export function referenceStates(damaged: States, original: States): States {
  const reference: States = new Map(original);
  for (const [key, bytes] of damaged) if (bytes !== null || !reference.has(key)) reference.set(key, bytes);
  return reference;
}

/**
 * What Cowbell's repair reads differently from the reference where qemu-img's repair kept the
 * reference's bytes (compared in `chunkBytes` pieces); an empty list is a pass.
 */
export function keptRangeMismatches(reference: States, byQemu: States, byCowbell: States, chunkBytes = 512): string[] {
  const problems: string[] = [];
  for (const [key, qemuBytes] of byQemu) {
    const referenceBytes = reference.get(key);
    if (qemuBytes === null || referenceBytes === null || referenceBytes === undefined) continue;
    const ours = byCowbell.get(key);
    for (let start = 0; start < Math.min(qemuBytes.length, referenceBytes.length); start += chunkBytes) {
      const end = Math.min(start + chunkBytes, qemuBytes.length, referenceBytes.length);
      if (!sameBytes(qemuBytes, referenceBytes, start, end)) continue;
      if (ours === null || ours === undefined) {
        problems.push(`${key}: qemu-img's repair keeps it readable, Cowbell's ${ours === null ? 'cannot read it' : 'lost it'}`);
        break;
      }
      if (!sameBytes(ours, referenceBytes, start, end)) {
        problems.push(`${key}: bytes ${start}-${end} differ after Cowbell's repair (qemu-img's repair keeps them)`);
        break;
      }
    }
  }
  return problems;
}

function sameBytes(a: Uint8Array, b: Uint8Array, start: number, end: number): boolean {
  if (a.length < end || b.length < end) return false;
  for (let index = start; index < end; index++) if (a[index] !== b[index]) return false;
  return true;
}
