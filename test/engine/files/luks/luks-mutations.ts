/**
 * Damage for guest LUKS volumes (luks-hostile.test.ts, luks-fuzz.test.ts): LUKS2 JSON metadata
 * changed at random places and written back with its checksum made good (so that the parser, not
 * the checksum, must stand), and byte patches over headers, key material and encrypted data.
 */
import { createHash } from 'node:crypto';
import type { SeededRandom } from '../../../helpers/seeded-random.ts';
import type { Patch } from '../ntfs/ntfs-mutations.ts';

const encoder = new TextEncoder();

/** A LUKS2 header copy with its JSON replaced and its checksum computed again (sha256, as cryptsetup's). */
export function withJson(bytes: Uint8Array, at: number, json: string): Uint8Array | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const size = Number(view.getBigUint64(at + 8));
  const encoded = encoder.encode(json);
  if (4096 + encoded.length >= size) return null;
  const copy = bytes.slice();
  copy.fill(0, at + 4096, at + size);
  copy.set(encoded, at + 4096);
  copy.fill(0, at + 448, at + 512);
  copy.set(createHash('sha256').update(copy.subarray(at, at + size)).digest(), at + 448);
  return copy;
}

export function jsonOf(bytes: Uint8Array): Record<string, unknown> {
  const area = bytes.subarray(4096, Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(8)));
  return JSON.parse(new TextDecoder().decode(area.subarray(0, area.indexOf(0)))) as Record<string, unknown>;
}

const ODD_VALUES: unknown[] = [null, -1, 0, 1, 4096, 2 ** 53, '0', '-1', '99999999999999999999', 'dynamic', '', 'x', [], {}, true, 1.5, 'aes-xts-plain64', 'argon2id', 'sha256', 'AAAA'];

/** One random change somewhere in the JSON tree: a value replaced, a key removed, or a key added. */
export function mutateJson(root: Record<string, unknown>, random: SeededRandom): void {
  const paths: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = [];
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach((child, index) => { paths.push({ parent: node, key: index }); visit(child); });
    else if (typeof node === 'object' && node !== null) for (const [key, child] of Object.entries(node)) { paths.push({ parent: node as Record<string, unknown>, key }); visit(child); }
  };
  visit(root);
  const target = paths[random.int(0, paths.length)]!;
  const choice = random.int(0, 10);
  const parent = target.parent as Record<string | number, unknown>;
  if (choice === 0 && !Array.isArray(target.parent)) delete parent[target.key];
  else if (choice === 1 && !Array.isArray(target.parent)) parent[`extra${random.int(0, 9)}`] = ODD_VALUES[random.int(0, ODD_VALUES.length)];
  else parent[target.key] = ODD_VALUES[random.int(0, ODD_VALUES.length)];
}


/** The LUKS2 header size a volume's primary copy states (the secondary copy starts there). */
export function luks2HeaderSize(bytes: Uint8Array): number {
  return Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getBigUint64(8));
}

/**
 * One case's damage to a LUKS volume whose data starts at `payloadOffset`: its metadata changed
 * (LUKS2, both copies alike), or bytes of its headers, key material or the encrypted data changed.
 */
export function randomLuksDamage(pristine: Uint8Array, payloadOffset: number, random: SeededRandom): Patch[] {
  const isLuks2 = pristine[7] === 2;
  const choice = random.int(0, 4);
  if (isLuks2 && choice === 0) {
    const json = jsonOf(pristine);
    for (let changes = random.int(1, 4); changes > 0; changes--) mutateJson(json, random);
    const size = luks2HeaderSize(pristine);
    let bytes = withJson(pristine, 0, JSON.stringify(json));
    if (bytes === null) return [];
    bytes = withJson(bytes, size, JSON.stringify(json)) ?? bytes;
    return [{ offset: 0, bytes: [...bytes.subarray(0, 2 * size)] }];
  }
  const regions: [number, number][] = [
    [0, 1024],
    [0, payloadOffset],
    [payloadOffset, Math.min(pristine.length, payloadOffset + 1024 * 1024)],
    [payloadOffset, pristine.length],
  ];
  const [from, to] = regions[choice]!;
  return Array.from({ length: random.int(1, 6) }, () => {
    const offset = random.int(from, Math.max(from + 1, to - 16));
    return { offset, bytes: Array.from({ length: random.int(1, 17) }, () => random.int(0, 256)) };
  });
}
