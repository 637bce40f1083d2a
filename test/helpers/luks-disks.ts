/**
 * GPT disks with LUKS-encrypted partitions as installers make them, built at test time by the real
 * tools: ext4 by mke2fs -d, FAT by mkfs.vfat and mcopy, the LVM-in-LUKS plaintext checked in (made
 * by test/engine/files/luks/fixtures/make-lvm-in-luks-plaintext.sh), each encrypted in place by
 * `cryptsetup reencrypt --encrypt` on a plain file (no device-mapper needed). The LUKS1 volume is
 * made as LUKS2 and turned into LUKS1 by `cryptsetup convert`: cryptsetup 2.6's LUKS1 encryption
 * needs device-mapper. Every volume is checked after it is built with `cryptsetup luksDump` and
 * `cryptsetup open --test-passphrase` (which also need no device-mapper).
 *
 * Variant 'b' is 'a' with partition 3's files changed and partition 3 encrypted again (same uuid and
 * passphrase, a new volume key); every other byte of the disk is 'a''s.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { fatTool } from '../engine/files/fat-fixtures.ts';
import { debugfs, makeExtImage, makePartitionedDisk, MiB, placeImage, type TreeNode } from './guest-filesystems.ts';
import { qemuImg, runTool } from './qemu.ts';

export type LuksFileExpectation = { size: number; sha256: string } | 'directory';

export interface LuksKeyslotSpec {
  kdf: 'argon2id' | 'pbkdf2';
  /** pbkdf2's hash. */
  hash?: string;
  /** pbkdf2: iterations; argon2: time cost. */
  iterations: number;
  /** argon2 only: memory (KiB) and threads. */
  memoryKiB?: number;
  threads?: number;
}

export interface LuksFixtureVolume {
  partition: number;
  format: 'luks1' | 'luks2';
  uuid: string;
  label?: string;
  /** passphrases[i] opens keyslot i. */
  passphrases: string[];
  keyslots: LuksKeyslotSpec[];
  /** The encryption sector (LUKS1: always 512). */
  sectorBytes: number;
  /** Where the data segment starts, in bytes from the partition's start. */
  payloadOffset: number;
  cipher: string;
  keyBits: number;
  /** The first keyslot's kdf. */
  kdf: 'argon2id' | 'pbkdf2';
  holds: 'ext4' | 'vfat' | 'lvm';
  /** The plaintext that was encrypted: the first `bytes` of the data segment decrypt to it. */
  plaintext: { bytes: number; sha256: string };
}

export interface LuksFixturePartition {
  number: number;
  offset: number;
  length: number;
}

/** What make-lvm-in-luks-plaintext.sh wrote: where lvs said the volumes lie, from the PV's start. */
export interface LvmInLuksLayout {
  group: string;
  extentBytes: number;
  peStart: number;
  pvBytes: number;
  imageBytes: number;
  volumes: Record<string, { offset: number; length: number }[]>;
  rootLabel: string;
  swapLabel: string;
  rootFiles: Record<string, LuksFileExpectation>;
}

export interface LuksFixtureDisk {
  raw: string;
  sizeBytes: number;
  partitions: LuksFixturePartition[];
  volumes: LuksFixtureVolume[];
  lvm: LvmInLuksLayout;
  /**
   * Every path the disk's filesystems hold: "/1/…" for the plain partition 1, "/luks-<uuid>/…" for
   * the filesystem of an unlocked LUKS volume, "/vgcrypt-root/…" for the LV inside LUKS.
   */
  files: Record<string, LuksFileExpectation>;
}

export const LUKS_FIXTURES = path.join(import.meta.dirname, '..', 'engine', 'files', 'luks', 'fixtures');
const DISK_MIB = 64;
const PARTITIONS = [
  { startMiB: 1, sizeMiB: 7 },
  { startMiB: 8, sizeMiB: 22 },
  { startMiB: 30, sizeMiB: 12 },
  { startMiB: 42, sizeMiB: 8 },
];
/** GPT's type for a LUKS partition (sgdisk 8309, "Linux LUKS"); partition 1 is plain Linux. */
const LUKS_TYPE = '8309';

export const LUKS_VOLUMES: readonly Omit<LuksFixtureVolume, 'plaintext'>[] = [
  {
    partition: 2, format: 'luks2', uuid: '3f1d2c4b-5a69-4e87-9b0c-1d2e3f405162', label: 'cryptroot',
    passphrases: ['correct horse battery staple', 'second key, pbkdf2'],
    keyslots: [{ kdf: 'argon2id', iterations: 4, memoryKiB: 8192, threads: 1 }, { kdf: 'pbkdf2', hash: 'sha256', iterations: 1000 }],
    sectorBytes: 4096, payloadOffset: MiB, cipher: 'aes-xts-plain64', keyBits: 512, kdf: 'argon2id', holds: 'lvm',
  },
  {
    partition: 3, format: 'luks1', uuid: '7c6b5a49-3827-4165-8f4e-3d2c1b0a9988',
    passphrases: ['luks one'], keyslots: [{ kdf: 'pbkdf2', hash: 'sha256', iterations: 1000 }],
    sectorBytes: 512, payloadOffset: 2 * MiB, cipher: 'aes-xts-plain64', keyBits: 256, kdf: 'pbkdf2', holds: 'ext4',
  },
  {
    // A non-ASCII passphrase: its UTF-8 bytes are the key material.
    partition: 4, format: 'luks2', uuid: 'a1b2c3d4-e5f6-4718-8293-a4b5c6d7e8f9',
    passphrases: ['Grüße, Schlüssel'], keyslots: [{ kdf: 'pbkdf2', hash: 'sha512', iterations: 1000 }],
    sectorBytes: 512, payloadOffset: MiB, cipher: 'aes-cbc-essiv:sha256', keyBits: 256, kdf: 'pbkdf2', holds: 'vfat',
  },
];

const BOOT_TREE: Record<string, TreeNode> = { 'grub/grub.cfg': 'set default=0\nset timeout=3\nmenuentry "Ubuntu" { linux /vmlinuz root=/dev/mapper/vgcrypt-root }\n' };

/** Bytes by a formula (like the LVM fixtures'), so nothing random is needed to know them. */
function formulaBytes(size: number, multiplier: number): Buffer {
  return Buffer.from(Array.from({ length: size }, (_, n) => (n * multiplier + Math.floor(n / 4096)) % 251));
}

/** Partition 3's files; 'b' changes notes.txt, adds added.txt and removes todo.txt. */
function luks1Tree(variant: 'a' | 'b'): Record<string, TreeNode> {
  const tree: Record<string, TreeNode> = {
    'notes.txt': variant === 'a' ? 'a LUKS1 volume\n' : 'a LUKS1 volume, changed in b\n',
    'data/pattern.bin': formulaBytes(1536 * 1024 + 123, 13),
    'data/todo.txt': 'removed in b\n',
    'data/deeper/leaf.txt': 'leaf\n',
    'empty': { folder: true },
  };
  if (variant === 'b') {
    delete tree['data/todo.txt'];
    tree['data/added.txt'] = 'added in b\n';
  }
  return tree;
}

const FAT_FILES: Record<string, Uint8Array> = {
  '/HELLO.TXT': Buffer.from('hello from FAT inside LUKS2\n'),
  '/docs/Long File Name.txt': Buffer.from('a long name in a folder\n'),
  '/docs/table.bin': formulaBytes(70_000, 5),
};

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The expectations for a tree as writeTree lays it out, under `prefix`; ext4 adds lost+found. */
function treeExpectations(prefix: string, tree: Record<string, TreeNode>, ext: boolean): Record<string, LuksFileExpectation> {
  const files: Record<string, LuksFileExpectation> = ext ? { [`${prefix}/lost+found`]: 'directory' } : {};
  for (const [relative, node] of Object.entries(tree)) {
    const parts = relative.replace(/^\//, '').split('/');
    for (let depth = 1; depth < parts.length; depth++) files[`${prefix}/${parts.slice(0, depth).join('/')}`] = 'directory';
    const target = `${prefix}/${parts.join('/')}`;
    if (typeof node === 'string' || node instanceof Uint8Array) {
      const bytes = typeof node === 'string' ? Buffer.from(node) : node;
      files[target] = { size: bytes.length, sha256: sha256(bytes) };
    } else if ('folder' in node) files[target] = 'directory';
  }
  return files;
}

export function readLvmInLuksLayout(): LvmInLuksLayout {
  return JSON.parse(fs.readFileSync(path.join(LUKS_FIXTURES, 'lvm-in-luks-layout.json'), 'utf8')) as LvmInLuksLayout;
}

function volumeSpec(partition: number): Omit<LuksFixtureVolume, 'plaintext'> {
  const spec = LUKS_VOLUMES.find((volume) => volume.partition === partition);
  if (!spec) throw new Error(`no LUKS volume on partition ${partition}`);
  return spec;
}

function partitionOf(number: number): LuksFixturePartition {
  const part = PARTITIONS[number - 1];
  if (!part) throw new Error(`no partition ${number}`);
  return { number, offset: part.startMiB * MiB, length: part.sizeMiB * MiB };
}

/** A file holding a passphrase's bytes, for --key-file (no newline: the whole file is the key). */
function keyFile(work: string, passphrase: string): string {
  const file = path.join(work, `key-${sha256(Buffer.from(passphrase)).slice(0, 12)}`);
  fs.writeFileSync(file, passphrase);
  return file;
}

function kdfArgs(slot: LuksKeyslotSpec): string[] {
  const args = ['--pbkdf', slot.kdf, '--pbkdf-force-iterations', String(slot.iterations)];
  if (slot.hash !== undefined) args.push('--hash', slot.hash);
  if (slot.memoryKiB !== undefined) args.push('--pbkdf-memory', String(slot.memoryKiB));
  if (slot.threads !== undefined) args.push('--pbkdf-parallel', String(slot.threads));
  return args;
}

/**
 * Encrypts `plaintext` into a new partition-sized file. reencrypt moves the plaintext up to the
 * data offset (half of --reduce-device-size) and loses the file's last --reduce-device-size bytes,
 * so the plaintext must end at least that far before the partition's end.
 */
async function encryptVolume(work: string, spec: Omit<LuksFixtureVolume, 'plaintext'>, plaintext: string): Promise<LuksFixtureVolume> {
  const partition = partitionOf(spec.partition);
  const bytes = fs.readFileSync(plaintext);
  const reduce = 2 * spec.payloadOffset;
  if (bytes.length > partition.length - reduce) throw new Error(`partition ${spec.partition}'s plaintext is too large for its partition`);
  const file = path.join(work, `p${spec.partition}.luks`);
  fs.writeFileSync(file, bytes);
  fs.truncateSync(file, partition.length);
  const [first, ...more] = spec.keyslots;
  if (!first) throw new Error('a LUKS volume needs a keyslot');
  await runTool('cryptsetup', [
    'reencrypt', '--encrypt', '--type', 'luks2', '--batch-mode', '--cipher', spec.cipher, '--key-size', String(spec.keyBits),
    '--sector-size', String(spec.sectorBytes), '--luks2-metadata-size', '16k', '--reduce-device-size', String(reduce),
    ...kdfArgs(first), '--uuid', spec.uuid, ...(spec.label === undefined ? [] : ['--label', spec.label]),
    '--key-file', keyFile(work, spec.passphrases[0] ?? ''), file,
  ]);
  for (const [index, slot] of more.entries()) {
    await runTool('cryptsetup', ['luksAddKey', '--batch-mode', ...kdfArgs(slot), '--key-slot', String(index + 1), '--key-file', keyFile(work, spec.passphrases[0] ?? ''), file, keyFile(work, spec.passphrases[index + 1] ?? '')]);
  }
  if (spec.format === 'luks1') await runTool('cryptsetup', ['convert', '--batch-mode', '--type', 'luks1', file]);
  await checkVolume(work, file, spec);
  return { ...spec, plaintext: { bytes: bytes.length, sha256: sha256(bytes) } };
}

/** One keyslot as luksDump reports it. */
export interface LuksDumpKeyslot {
  slot: number;
  kdf: string;
  hash?: string;
  iterations: number;
  memoryKiB?: number;
  threads?: number;
  keyBits: number;
}

/** The facts of a LUKS header that `cryptsetup luksDump` reports (LUKS2: its JSON metadata). */
export interface LuksDumpFacts {
  version: 1 | 2;
  uuid: string;
  label: string | null;
  cipher: string;
  keyBits: number;
  sectorBytes: number;
  payloadOffset: number;
  keyslots: LuksDumpKeyslot[];
}

interface Luks2Json {
  keyslots: Record<string, { key_size: number; kdf: { type: string; hash?: string; iterations?: number; time?: number; memory?: number; cpus?: number } }>;
  segments: Record<string, { offset: string; encryption: string; sector_size: number }>;
}

function textField(dump: string, name: string): string | null {
  const match = new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(dump);
  return match ? (match[1] ?? '').trim() : null;
}

export async function luksDump(file: string): Promise<LuksDumpFacts> {
  const text = (await runTool('cryptsetup', ['luksDump', file])).stdout;
  const uuid = textField(text, 'UUID') ?? '';
  if (textField(text, 'Version') === '1') {
    const keyBits = Number(textField(text, 'MK bits'));
    const hash = textField(text, 'Hash spec') ?? '';
    const keyslots = [...text.matchAll(/^Key Slot (\d): ENABLED\n\s*Iterations:\s*(\d+)/gm)].map((match) => ({ slot: Number(match[1]), kdf: 'pbkdf2', hash, iterations: Number(match[2]), keyBits }));
    return { version: 1, uuid, label: null, cipher: `${textField(text, 'Cipher name')}-${textField(text, 'Cipher mode')}`, keyBits, sectorBytes: 512, payloadOffset: Number(textField(text, 'Payload offset')) * 512, keyslots };
  }
  const json = JSON.parse((await runTool('cryptsetup', ['luksDump', '--dump-json-metadata', file])).stdout) as Luks2Json;
  const segment = json.segments['0'];
  if (!segment) throw new Error(`${file} has no data segment 0`);
  const keyslots = Object.entries(json.keyslots).map(([slot, keyslot]) => {
    const facts: LuksDumpKeyslot = { slot: Number(slot), kdf: keyslot.kdf.type, iterations: keyslot.kdf.iterations ?? keyslot.kdf.time ?? 0, keyBits: keyslot.key_size * 8 };
    if (keyslot.kdf.hash !== undefined) facts.hash = keyslot.kdf.hash;
    if (keyslot.kdf.memory !== undefined) facts.memoryKiB = keyslot.kdf.memory;
    if (keyslot.kdf.cpus !== undefined) facts.threads = keyslot.kdf.cpus;
    return facts;
  });
  const label = textField(text, 'Label');
  return {
    version: 2, uuid, label: label === null || label === '(no label)' ? null : label, cipher: segment.encryption,
    keyBits: keyslots[0]?.keyBits ?? 0, sectorBytes: segment.sector_size, payloadOffset: Number(segment.offset), keyslots,
  };
}

/** Whether a passphrase opens the volume (`cryptsetup open --test-passphrase`: no device-mapper). */
export async function opensWith(work: string, file: string, passphrase: string): Promise<boolean> {
  const result = await runTool('cryptsetup', ['open', '--test-passphrase', '--key-file', keyFile(work, passphrase), file], { okCodes: [0, 2] });
  return result.code === 0;
}

/** The volume key, as `luksDump --dump-volume-key` reveals it to a passphrase. */
export async function volumeKey(work: string, file: string, passphrase: string): Promise<Buffer> {
  const dump = (await runTool('cryptsetup', ['luksDump', '--dump-volume-key', '--batch-mode', '--key-file', keyFile(work, passphrase), file])).stdout;
  const hex = /MK dump:\s*((?:[0-9a-f]{2}\s+)+)/.exec(dump);
  if (!hex) throw new Error(`luksDump printed no volume key for ${file}:\n${dump}`);
  return Buffer.from((hex[1] ?? '').replace(/\s+/g, ''), 'hex');
}

/** What luksDump reports as the spec asks, every passphrase opening it. */
async function checkVolume(work: string, file: string, spec: Omit<LuksFixtureVolume, 'plaintext'>): Promise<void> {
  const facts = await luksDump(file);
  const wanted = { version: spec.format === 'luks1' ? 1 : 2, uuid: spec.uuid, label: spec.label ?? null, cipher: spec.cipher, keyBits: spec.keyBits, sectorBytes: spec.sectorBytes, payloadOffset: spec.payloadOffset, keyslots: spec.keyslots.length };
  const got = { ...facts, keyslots: facts.keyslots.length };
  for (const key of Object.keys(wanted) as (keyof typeof wanted)[]) {
    if (wanted[key] !== got[key]) throw new Error(`partition ${spec.partition}: luksDump says ${key} ${String(got[key])}, not ${String(wanted[key])}`);
  }
  for (const [index, slot] of spec.keyslots.entries()) {
    const dumped = facts.keyslots.find((keyslot) => keyslot.slot === index);
    if (dumped?.kdf !== slot.kdf || dumped.iterations !== slot.iterations) throw new Error(`partition ${spec.partition}: keyslot ${index} is ${JSON.stringify(dumped)}, not ${JSON.stringify(slot)}`);
  }
  for (const passphrase of spec.passphrases) {
    if (!(await opensWith(work, file, passphrase))) throw new Error(`partition ${spec.partition}: cryptsetup does not open it with ${JSON.stringify(passphrase)}`);
  }
}

async function makeBootImage(work: string): Promise<string> {
  const image = path.join(work, 'boot.ext4');
  await makeExtImage(image, partitionOf(1).length / MiB, BOOT_TREE, { label: 'boot' });
  return image;
}

function makeLvmPlaintext(work: string): string {
  const image = path.join(work, 'lvm-in-luks.pv');
  fs.writeFileSync(image, gunzipSync(fs.readFileSync(path.join(LUKS_FIXTURES, 'lvm-in-luks.img.gz'))));
  return image;
}

const LUKS1_FS_UUID = '4e5f6071-8293-4a4b-8c5d-6e7f8091a2b3';

/**
 * Partition 3's ext4 (1 KiB blocks); 'b' is 'a' (the very image `fromA`, not one made again: its
 * files' times would differ) changed by debugfs, as a guest would change it.
 */
async function makeLuks1Plaintext(work: string, variant: 'a' | 'b', fromA?: string): Promise<string> {
  const image = path.join(work, `luks1-${variant}.ext4`);
  if (variant === 'a') {
    await makeExtImage(image, 8, luks1Tree('a'), { label: 'data', mkfsArgs: ['-b', '1024', '-U', LUKS1_FS_UUID] });
    return image;
  }
  if (fromA === undefined || !fs.existsSync(fromA)) throw new Error(`variant b is made from variant a's image, which is not at ${String(fromA)}`);
  fs.copyFileSync(fromA, image);
  const staged = path.join(work, 'b-files');
  fs.mkdirSync(staged, { recursive: true });
  const tree = luks1Tree('b');
  fs.writeFileSync(path.join(staged, 'notes.txt'), tree['notes.txt'] as string);
  fs.writeFileSync(path.join(staged, 'added.txt'), tree['data/added.txt'] as string);
  await debugfs(image, ['rm /notes.txt', `write ${path.join(staged, 'notes.txt')} notes.txt`, 'cd /data', 'rm todo.txt', `write ${path.join(staged, 'added.txt')} added.txt`]);
  return image;
}

async function makeFatPlaintext(work: string): Promise<string> {
  const image = path.join(work, 'fat.vfat');
  fs.rmSync(image, { force: true });
  await fatTool('mkfs.vfat', ['--invariant', '-C', '-n', 'CRYPTFAT', '-i', '0c0ffee0', image, String(6 * 1024)]);
  await fatTool('mmd', ['-i', image, '::/docs']);
  for (const [volumePath, bytes] of Object.entries(FAT_FILES)) {
    const host = path.join(work, `fat-${sha256(Buffer.from(volumePath)).slice(0, 8)}`);
    fs.writeFileSync(host, bytes);
    await fatTool('mcopy', ['-i', image, host, `::${volumePath}`]);
  }
  return image;
}

function expectedFiles(lvm: LvmInLuksLayout, variant: 'a' | 'b'): Record<string, LuksFileExpectation> {
  const fat: Record<string, TreeNode> = Object.fromEntries(Object.entries(FAT_FILES).map(([name, bytes]) => [name.slice(1), bytes]));
  const root = Object.fromEntries(Object.entries(lvm.rootFiles).map(([name, expectation]) => [`/vgcrypt-root${name}`, expectation]));
  return {
    ...treeExpectations('/1', BOOT_TREE, true),
    '/vgcrypt-root/lost+found': 'directory',
    ...root,
    ...treeExpectations(`/luks-${volumeSpec(3).uuid}`, luks1Tree(variant), true),
    ...treeExpectations(`/luks-${volumeSpec(4).uuid}`, fat, false),
  };
}

interface Built {
  disk: LuksFixtureDisk;
  work: string;
}

/** Variant 'a' per folder, so 'b' can be made from its bytes. */
const builtA = new Map<string, Promise<Built>>();

async function buildA(folder: string): Promise<Built> {
  const work = fs.mkdtempSync(path.join(folder, 'luks-build-'));
  const raw = path.join(folder, 'luks-a.raw');
  await makePartitionedDisk(raw, DISK_MIB, 'gpt', PARTITIONS.map((part, index) => ({ ...part, type: index === 0 ? '8300' : LUKS_TYPE })));
  const [boot, lvm, luks1, fat] = await Promise.all([makeBootImage(work), makeLvmPlaintext(work), makeLuks1Plaintext(work, 'a'), makeFatPlaintext(work)]);
  const volumes = [
    await encryptVolume(work, volumeSpec(2), lvm),
    await encryptVolume(work, volumeSpec(3), luks1),
    await encryptVolume(work, volumeSpec(4), fat),
  ];
  placeImage(raw, boot, partitionOf(1).offset);
  for (const volume of volumes) placeImage(raw, path.join(work, `p${volume.partition}.luks`), partitionOf(volume.partition).offset);
  const layout = readLvmInLuksLayout();
  const disk: LuksFixtureDisk = { raw, sizeBytes: DISK_MIB * MiB, partitions: PARTITIONS.map((_, index) => partitionOf(index + 1)), volumes, lvm: layout, files: expectedFiles(layout, 'a') };
  return { disk, work };
}

async function buildB(folder: string, a: Built): Promise<LuksFixtureDisk> {
  const raw = path.join(folder, 'luks-b.raw');
  fs.copyFileSync(a.disk.raw, raw);
  const work = fs.mkdtempSync(path.join(a.work, 'b-'));
  const volume = await encryptVolume(work, volumeSpec(3), await makeLuks1Plaintext(work, 'b', path.join(a.work, 'luks1-a.ext4')));
  placeImage(raw, path.join(work, 'p3.luks'), partitionOf(3).offset);
  return { ...a.disk, raw, volumes: a.disk.volumes.map((other) => (other.partition === 3 ? volume : other)), files: expectedFiles(a.disk.lvm, 'b') };
}

/**
 * The disk of `variant` as a raw file in `folder` (luks-a.raw, luks-b.raw). Building 'b' builds 'a'
 * first (once per folder), since 'b' is 'a''s bytes but for partition 3.
 */
export async function buildLuksDisk(folder: string, variant: 'a' | 'b'): Promise<LuksFixtureDisk> {
  let a = builtA.get(folder);
  if (!a) {
    a = buildA(folder);
    builtA.set(folder, a);
  }
  return variant === 'a' ? (await a).disk : buildB(folder, await a);
}

/** A partition's bytes as a file of their own, for cryptsetup (which reads a LUKS header at offset 0). */
export function extractPartition(disk: LuksFixtureDisk, raw: string, number: number, target: string): string {
  const partition = disk.partitions.find((part) => part.number === number);
  if (!partition) throw new Error(`no partition ${number}`);
  const fd = fs.openSync(raw, 'r');
  try {
    const bytes = Buffer.alloc(partition.length);
    fs.readSync(fd, bytes, 0, partition.length, partition.offset);
    fs.writeFileSync(target, bytes);
  } finally {
    fs.closeSync(fd);
  }
  return target;
}

/**
 * A qcow2 (`name` in `folder`) whose snapshot "before" is variant 'a' and whose current state is
 * variant 'b' (partition 3's files changed), as the files-diff tests and flows compare them.
 */
export async function buildLuksQcow2(folder: string, name = 'luks.qcow2'): Promise<{ a: LuksFixtureDisk; b: LuksFixtureDisk; disk: string }> {
  const a = await buildLuksDisk(folder, 'a');
  const b = await buildLuksDisk(folder, 'b');
  const disk = path.join(folder, name);
  await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', a.raw, disk]);
  await qemuImg(['snapshot', '-c', 'before', disk]);
  await qemuImg(['convert', '-n', '-f', 'raw', '-O', 'qcow2', b.raw, disk]);
  return { a, b, disk };
}
