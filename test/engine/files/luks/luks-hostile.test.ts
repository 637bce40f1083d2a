/**
 * Hostile LUKS headers inside a guest: the LUKS2 and LUKS1 volumes cryptsetup made (luks-disks.ts),
 * their JSON metadata changed at random places — each change re-checksummed, so that it is the
 * parser and not the checksum that must stand — and their binary headers changed byte by byte.
 * Reading, unlocking with the right passphrase and reading the decrypted data end in Cowbell's own
 * typed errors (or succeed), never in anything else; and a damaged primary copy falls back to the
 * secondary, as cryptsetup's does.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../../src/shared/qcow2/errors.ts';
import { decryptedReader, readGuestLuks } from '../../../../src/shared/qcow2/files/guest-luks.ts';
import { buildLuksDisk, extractPartition, LUKS_VOLUMES, type LuksFixtureDisk } from '../../../helpers/luks-disks.ts';
import { tempDir, type TempDir } from '../../../helpers/qemu.ts';
import { SeededRandom } from '../../../helpers/seeded-random.ts';

const CASES = Number(process.env.LUKS_FUZZ_CASES ?? 300);
const EXPECTED_CODES = new Set(['FILESYSTEM_CORRUPT', 'FILESYSTEM_UNSUPPORTED', 'BAD_PASSPHRASE']);
/** Parameters whose key derivation would take longer than a test should wait are judged only by the parser. */
const CHEAP_KDF_KIB = 64 * 1024;

let folder: TempDir;
let disk: LuksFixtureDisk;
const encoder = new TextEncoder();

beforeAll(async () => {
  folder = tempDir();
  disk = await buildLuksDisk(folder.path, 'a');
}, 120_000);
afterAll(() => folder.cleanup());

function volumeBytes(partition: number): Uint8Array {
  return new Uint8Array(fs.readFileSync(extractPartition(disk, disk.raw, partition, folder.file(`p${partition}.img`))));
}

const readerOf = (bytes: Uint8Array) => (offset: number, length: number): Promise<Uint8Array> => {
  if (offset < 0 || offset + length > bytes.length) throw new Error(`the test's volume was read out of bounds (${offset}+${length})`);
  return Promise.resolve(bytes.slice(offset, offset + length));
};

/** Reads, unlocks and reads some decrypted sectors; returns what it ended in. */
async function exercise(bytes: Uint8Array, passphrase: string): Promise<string> {
  try {
    const luks = await readGuestLuks(readerOf(bytes), bytes.length);
    const costly = /"memory":\s*(\d+)/.exec(JSON.stringify(luks));
    if (costly !== null && Number(costly[1]) > CHEAP_KDF_KIB) return 'parsed';
    const key = await luks.unlock(encoder.encode(passphrase));
    const reader = decryptedReader(luks, luks.dataCipher(key), (buffer, offset) => {
      if (offset < 0 || offset + buffer.length > bytes.length) throw new Qcow2Error('FILESYSTEM_CORRUPT', 'past the volume');
      buffer.set(bytes.subarray(offset, offset + buffer.length));
    });
    const sector = new Uint8Array(4096);
    for (const at of [0, reader.virtualSize - sector.length]) if (at >= 0) reader.readInto(sector, at);
    return 'read';
  } catch (error) {
    if (error instanceof Qcow2Error && EXPECTED_CODES.has(error.code)) return error.code;
    throw error;
  }
}

/** A LUKS2 header copy with its JSON replaced and its checksum computed again (sha256, as cryptsetup's). */
function withJson(bytes: Uint8Array, at: number, json: string): Uint8Array | null {
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

function jsonOf(bytes: Uint8Array): Record<string, unknown> {
  const area = bytes.subarray(4096, Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(8)));
  return JSON.parse(new TextDecoder().decode(area.subarray(0, area.indexOf(0)))) as Record<string, unknown>;
}

const ODD_VALUES: unknown[] = [null, -1, 0, 1, 4096, 2 ** 53, '0', '-1', '99999999999999999999', 'dynamic', '', 'x', [], {}, true, 1.5, 'aes-xts-plain64', 'argon2id', 'sha256', 'AAAA'];

/** One random change somewhere in the JSON tree: a value replaced, a key removed, or a key added. */
function mutate(root: Record<string, unknown>, random: SeededRandom): void {
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

describe('hostile LUKS headers inside a guest', { timeout: 300_000 }, () => {
  it('the real volumes read and unlock (the baseline every mutation departs from)', async () => {
    for (const spec of LUKS_VOLUMES) expect(await exercise(volumeBytes(spec.partition), spec.passphrases[0]!)).toBe('read');
  });

  it(`LUKS2 metadata changed at random (${CASES} cases per volume, checksums made good): typed errors only`, async () => {
    for (const spec of LUKS_VOLUMES.filter((volume) => volume.format === 'luks2')) {
      const original = volumeBytes(spec.partition);
      const random = new SeededRandom(spec.partition * 1000 + 7);
      const outcomes = new Map<string, number>();
      for (let index = 0; index < CASES; index++) {
        const json = jsonOf(original);
        for (let changes = random.int(1, 4); changes > 0; changes--) mutate(json, random);
        let bytes = withJson(original, 0, JSON.stringify(json));
        if (bytes === null) continue;
        // The secondary copy says the same (else the untouched one would simply be read).
        const secondary = Number(new DataView(bytes.buffer).getBigUint64(8));
        bytes = withJson(bytes, secondary, JSON.stringify(json)) ?? bytes;
        const outcome = await exercise(bytes, spec.passphrases[0]!);
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
      // The changes reach the parser's checks, and some leave a volume that still opens.
      expect(outcomes.get('FILESYSTEM_CORRUPT') ?? 0).toBeGreaterThan(CASES / 10);
      expect((outcomes.get('read') ?? 0) + (outcomes.get('parsed') ?? 0)).toBeGreaterThan(0);
    }
  });

  it('binary headers and key material changed byte by byte: typed errors only; a damaged primary falls back to the secondary', async () => {
    const random = new SeededRandom(99);
    for (const spec of LUKS_VOLUMES) {
      const original = volumeBytes(spec.partition);
      for (let index = 0; index < CASES / 3; index++) {
        const bytes = original.slice();
        const region = random.int(0, 3) === 0 ? 4096 : 600;
        for (let changes = random.int(1, 4); changes > 0; changes--) bytes[random.int(0, region)] = random.int(0, 256);
        await exercise(bytes, spec.passphrases[0]!);
      }
    }
    const luks2 = volumeBytes(2);
    luks2[4096 + 10] = luks2[4096 + 10]! ^ 0xff;
    expect(await exercise(luks2, LUKS_VOLUMES[0]!.passphrases[0]!)).toBe('read');
    const both = luks2.slice();
    const secondary = Number(new DataView(both.buffer).getBigUint64(8));
    both[secondary + 4096 + 10] = both[secondary + 4096 + 10]! ^ 0xff;
    expect(await exercise(both, LUKS_VOLUMES[0]!.passphrases[0]!)).toBe('FILESYSTEM_CORRUPT');
  });
});
