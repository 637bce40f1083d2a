/**
 * `ls`, `copy-out` and `files-diff` on a disk whose guest has LUKS-encrypted volumes (made by
 * cryptsetup: test/helpers/luks-disks.ts): locked without their passphrases (and saying how to
 * open them), read with --volume-passphrase-file, and a wrong passphrase named as such.
 */
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../helpers/cli.ts';
import { buildLuksQcow2, LUKS_VOLUMES, type LuksFixtureDisk } from '../helpers/luks-disks.ts';
import { tempDir, type TempDir } from '../helpers/qemu.ts';

let folder: TempDir;
let a: LuksFixtureDisk;
let disk = '';
const passphraseFile = (partition: number, index = 0): string => folder.file(`passphrase-${partition}-${index}`);
const luks = (partition: number) => LUKS_VOLUMES.find((volume) => volume.partition === partition)!;

beforeAll(async () => {
  folder = tempDir();
  ({ a, disk } = await buildLuksQcow2(folder.path));
  for (const volume of LUKS_VOLUMES) {
    // As an editor leaves it: one trailing newline, dropped.
    for (const [index, passphrase] of volume.passphrases.entries()) fs.writeFileSync(passphraseFile(volume.partition, index), `${passphrase}\n`, { mode: 0o600 });
  }
  fs.writeFileSync(folder.file('wrong'), 'not it\n', { mode: 0o600 });
}, 120_000);
afterAll(() => folder.cleanup());

describe('cowbell on encrypted volumes inside the guest', { timeout: 120_000 }, () => {
  it('ls lists them locked and says how to open each', async () => {
    const result = await run('ls', disk);
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/^2 +22 MiB +luks2 \(locked\) +cryptroot +gpt /m);
    expect(result.out).toMatch(/^3 +12 MiB +luks1 \(locked\) +gpt /m);
    expect(result.out).not.toMatch(/vgcrypt|luks-/);
    expect(result.err).toContain(`cowbell: note: volume /2 (current) is LUKS2-encrypted (UUID ${luks(2).uuid}): give its passphrase with --volume-passphrase-file FILE to read its files`);
    const json = JSON.parse((await run('ls', '--json', disk)).out) as { volumes: { name: string; encryption?: { format: string; uuid: string; unlocked: boolean } }[] };
    expect(json.volumes.find((volume) => volume.name === '3')?.encryption).toMatchObject({ format: 'luks1', uuid: luks(3).uuid, unlocked: false });
  });

  it('ls and copy-out read inside them with --volume-passphrase-file', async () => {
    const volumes = await run('ls', '--volume-passphrase-file', passphraseFile(2, 1), '--volume-passphrase-file', passphraseFile(3), disk);
    expect(volumes.code).toBe(0);
    expect(volumes.out).toMatch(/^vgcrypt-root +14 MiB +ext +cryptrootfs +lvm vgcrypt\/root, inside \/2$/m);
    expect(volumes.out).toMatch(new RegExp(`^luks-${luks(3).uuid} +10 MiB +ext +data +inside /3$`, 'm'));
    // Both files were tried on volume 4, and neither opened it.
    expect(volumes.err).toContain(`volume /4 (current) is LUKS2-encrypted (UUID ${luks(4).uuid}): not opened: The passphrase opens none of the encrypted volume's key slots`);
    const listing = await run('ls', '--volume-passphrase-file', passphraseFile(2), `${disk}@before`, '/vgcrypt-root/home/me');
    expect(listing.out).toMatch(/^file +3 MiB .+ big\.bin$/m);
    const target = folder.file('big.bin');
    const copy = await run('copy-out', '--volume-passphrase-file', passphraseFile(2), `${disk}@before`, '/vgcrypt-root/home/me/big.bin', target);
    expect(copy.code).toBe(0);
    const expected = a.files['/vgcrypt-root/home/me/big.bin'] as { sha256: string };
    expect(createHash('sha256').update(fs.readFileSync(target)).digest('hex')).toBe(expected.sha256);
  });

  it('files-diff compares inside the volumes it opens, and names a wrong passphrase', async () => {
    const diff = await run('files-diff', '--json', '--volume-passphrase-file', passphraseFile(3), disk, 'before', 'current');
    expect(diff.code).toBe(0);
    const result = JSON.parse(diff.out) as { differences: { path: string; change: string }[]; skipped: { volume: string; reason: string }[] };
    const inside = `/luks-${luks(3).uuid}`;
    expect(result.differences.map((each) => `${each.change} ${each.path}`).sort()).toEqual([`added ${inside}/data/added.txt`, `changed ${inside}/notes.txt`, `removed ${inside}/data/todo.txt`]);
    expect(result.skipped.map((each) => each.volume)).toEqual(['/2', '/4']);
    const wrong = await run('ls', '--volume-passphrase-file', folder.file('wrong'), disk);
    expect(wrong.code).toBe(0);
    expect(wrong.out).toMatch(/^3 +12 MiB +luks1 \(locked\) .+The passphrase opens none of the encrypted volume's key slots$/m);
    expect(wrong.err).not.toContain('not it');
  });
});
