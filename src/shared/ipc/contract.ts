/**
 * The IPC contract: every request the renderer may make, every job it may start, and every
 * event main may send — declared once. Main validates incoming arguments with these schemas;
 * the preload (Electron) and the WebSocket bridge (browser mode) expose exactly these calls.
 */
import { z } from 'zod';
import { MAX_SNAPSHOT_NOTE_BYTES, type AllocationMap, type CompressedData, type BackingChain, type CheckResult, type DiffResult, type GuestFileDifference, type GuestFileEntry, type GuestFilesDiff, type GuestVolumeInfo, type ImageInfo, type MapEntry, type RepairLoss, type ResizePreview, type ResizeResult, type RewriteSummary, type SnapshotTree, type UnreadableRange, type UsageReport } from '../qcow2/model.ts';
import type { ErrorCode } from '../qcow2/errors-codes.ts';

export type { CompressedData };

/** An absolute path from the renderer: no NUL, bounded, absolute on POSIX or Windows. */
export const AbsolutePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((value) => !value.includes('\0'), 'path contains a NUL byte')
  // A lone surrogate (the engine's spelling of a byte that is not UTF-8) would reach most file calls
  // as U+FFFD, which names another file.
  .refine((value) => !/\p{Surrogate}/u.test(value), 'path holds a lone surrogate')
  .refine((value) => value.startsWith('/') || /^[A-Za-z]:[\\/]/.test(value), 'path must be absolute');

export const SnapshotName = z
  .string()
  .min(1)
  .max(1024)
  .refine((value) => !value.includes('\0'), 'name contains a NUL byte');

/**
 * A snapshot's id, which the app sends beside its name: qcow2 keeps ids unique but not names
 * (qemu-img snapshot -c takes a name twice), so the id says which of two alike-named snapshots the
 * user chose, and the name that it is still the one shown. Without it a name must be unambiguous.
 */
export const SnapshotId = SnapshotName;

/**
 * The creation time of the snapshot the user chose, as the tree showed it (ISO 8601): QEMU may give
 * a snapshot deleted and made again under the same name the same id, so a change the app asks for
 * is refused where the snapshot bearing them is not the one shown.
 */
export const SnapshotDate = z.iso.datetime();

const utf8 = new TextEncoder();

/** A note's size as the engine counts it: UTF-8 bytes, not characters. */
export function snapshotNoteBytes(note: string): number {
  return utf8.encode(note).length;
}

/** A snapshot's note (kept in Cowbell's record in the snapshot's extra data): '' clears it. */
export const SnapshotNote = z
  .string()
  .max(MAX_SNAPSHOT_NOTE_BYTES)
  .refine((value) => !value.includes('\0'), 'a note cannot contain a NUL character')
  .refine((value) => snapshotNoteBytes(value) <= MAX_SNAPSHOT_NOTE_BYTES, `a note may be at most ${MAX_SNAPSHOT_NOTE_BYTES} bytes of UTF-8`);

const Empty = z.object({}).strict();

const REFCOUNT_WIDTHS = [1, 2, 4, 8, 16, 32, 64];

/**
 * A backing file's format is given, never guessed (as qemu-img 7.2 asks -F): a raw disk's guest can
 * write what looks like a qcow2 header naming a host file, and a guessed format recorded in the new
 * image would have QEMU trust it from then on.
 */
const BACKING_FORMAT_NEEDED = 'a backing file needs its format (qcow2 or raw): it is not guessed';

/** What a new image is made with (create's options); the size defaults to the backing file's. */
export const CreateImageArgs = z
  .object({
    size: z.number().int().positive().max(2 ** 52).optional(),
    clusterSize: z
      .number()
      .int()
      .min(512)
      .max(2 * 1024 * 1024)
      .refine((value) => (value & (value - 1)) === 0, 'cluster size must be a power of two')
      .optional(),
    compat: z.enum(['0.10', '1.1']).optional(),
    refcountBits: z
      .number()
      .int()
      .refine((value) => REFCOUNT_WIDTHS.includes(value), 'refcount bits must be 1, 2, 4, 8, 16, 32 or 64')
      .optional(),
    extendedL2: z.boolean().optional(),
    backingFile: AbsolutePath.optional(),
    backingFormat: z.enum(['qcow2', 'raw']).optional(),
    preallocation: z.enum(['off', 'metadata']).optional(),
    compressionType: z.enum(['zlib', 'zstd']).optional(),
  })
  .strict()
  .refine((args) => args.size !== undefined || args.backingFile !== undefined, 'a size is needed (or a backing file to take it from)')
  .refine((args) => args.backingFile === undefined || args.backingFormat !== undefined, BACKING_FORMAT_NEEDED);

/** How a rewrite stores data clusters: all compressed, as they are, or none compressed. */
export const RewriteCompression = z.enum(['compress', 'keep', 'uncompress']);
/** zstd needs a compat 1.1 image; by default the disk keeps its own type. */
export const CompressionTypeName = z.enum(['zlib', 'zstd']);
/** Upgrade a compat 0.10 (qcow2 version 2) disk to compat 1.1 on the way; without it a disk keeps its version. */
export const UpgradeCompat = z.literal('1.1');

/** What "Compress…" and "Compact…" would give, asked before they start (reads metadata and a sample). */

/**
 * Leave the disk's persistent dirty bitmaps behind (the user agreed: the next incremental backup is a
 * full one). Without it a rewrite of a disk that keeps bitmaps is refused (HAS_BITMAPS), nothing written.
 */
export const DropBitmaps = z.boolean();

/** "Compress…": every data cluster of every snapshot compressed, the disk replaced in place. */
export const CompressImageArgs = z.object({ compressionType: CompressionTypeName.optional(), compat: UpgradeCompat.optional(), dropBitmaps: DropBitmaps.optional() }).strict();
/**
 * A disk's passphrase, as QEMU takes a secret: UTF-8 text, no NUL. It crosses IPC once, in the
 * arguments of the one job that needs it (under the keys secrets.ts's SECRET_ARGUMENTS names), and
 * is never stored, logged or echoed back. A schema message never repeats the value it refused.
 */
export const Passphrase = z
  .string()
  .min(1, 'a passphrase is needed')
  .max(1024, 'a passphrase may be at most 1024 characters long')
  .refine((value) => !value.includes('\0'), 'a passphrase cannot contain a NUL character');

/** A LUKS cipher as qemu-img's encrypt.cipher-alg, cipher-mode, ivgen-alg and ivgen-hash-alg name it. */
export const LuksCipherArgs = z
  .object({
    aesKeyBits: z.union([z.literal(128), z.literal(192), z.literal(256)]),
    mode: z.enum(['xts', 'cbc']),
    ivGenerator: z.enum(['plain', 'plain64', 'essiv']),
    ivHash: z.literal('sha256').optional(),
  })
  .strict()
  .refine((cipher) => cipher.ivHash === undefined || cipher.ivGenerator === 'essiv', 'only essiv takes an IV hash');
/**
 * The size estimate of a rewrite: `output` is the new file's encryption — the disk's own ('same',
 * the default), none ('plain': Decrypt…) or a new LUKS key ('luks': Encrypt…, with `cipher`).
 */
export const RewritePreviewArgs = z
  .object({
    compression: RewriteCompression,
    compressionType: CompressionTypeName.optional(),
    compat: UpgradeCompat.optional(),
    output: z.enum(['same', 'plain', 'luks']).optional(),
    cipher: LuksCipherArgs.optional(),
    dropBitmaps: DropBitmaps.optional(),
  })
  .strict();
export const LuksHashName = z.enum(['sha1', 'sha256', 'sha512']);
/** How long unlocking a new key slot takes on this machine (QEMU's encrypt.iter-time): 2 s by default. */
export const IterTimeMs = z.number().int().min(100).max(60_000);

/** "Compact…": copied without the gaps, compressed clusters kept as they are unless `uncompress`; an encrypted disk's passphrase. */
export const CompactImageArgs = z.object({ uncompress: z.boolean().optional(), compat: UpgradeCompat.optional(), passphrase: Passphrase.optional(), dropBitmaps: DropBitmaps.optional() }).strict();
/**
 * "Encrypt…": the disk rewritten with every snapshot under a new LUKS key for `newPassphrase`
 * (QEMU's aes-256-xts-plain64, sha256 by default). `passphrase` unlocks a disk in the old AES
 * scheme, which this migrates to LUKS. `from` is the encryption the dialog saw ('plain' or 'aes'):
 * a disk that has changed since (another window encrypted it) is refused, nothing changed.
 */
export const EncryptImageArgs = z
  .object({
    newPassphrase: Passphrase,
    cipher: LuksCipherArgs.optional(),
    hash: LuksHashName.optional(),
    iterTimeMs: IterTimeMs.optional(),
    passphrase: Passphrase.optional(),
    from: z.enum(['plain', 'aes']).optional(),
    dropBitmaps: DropBitmaps.optional(),
  })
  .strict();
/** "Decrypt…": the disk rewritten with every snapshot, its data stored plain. */
export const DecryptImageArgs = z.object({ passphrase: Passphrase, dropBitmaps: DropBitmaps.optional() }).strict();
/**
 * "Change passphrase…" on a LUKS disk, in place (only key slots change): 'change' replaces every
 * slot `passphrase` opens with one for `newPassphrase`; 'add' adds `newPassphrase` beside the
 * others; 'remove' erases the slots `passphrase` opens (never the last one).
 */
export const ChangePassphraseArgs = z
  .object({ passphrase: Passphrase, action: z.enum(['change', 'add', 'remove']), newPassphrase: Passphrase.optional(), iterTimeMs: IterTimeMs.optional() })
  .strict()
  .refine((args) => (args.action === 'remove') === (args.newPassphrase === undefined), 'change and add need a new passphrase; remove takes none');
/** "Save as new disk…": one snapshot's state written to `target`, a new file (never an existing one), unencrypted (as qemu-img convert); an encrypted disk's passphrase to read it. */
export const ExportSnapshotArgs = z.object({ name: SnapshotName, id: SnapshotId.optional(), date: SnapshotDate.optional(), target: AbsolutePath, format: z.enum(['qcow2', 'raw']), passphrase: Passphrase.optional() }).strict();
/**
 * "Save what can be read…" on a damaged disk: its current state (or snapshot `snapshot`'s) copied to
 * `target`, a new file, as far as it can be read; zeros where it cannot (convert --rescue).
 */
/** `snapshot` names the state to save; `snapshotId` and `snapshotDate` (sent by the app) say which of several snapshots of that name, and that it is still the one shown. */
export const RescueImageArgs = z.object({ target: AbsolutePath, format: z.enum(['qcow2', 'raw']), snapshot: SnapshotName.optional(), snapshotId: SnapshotId.optional(), snapshotDate: SnapshotDate.optional(), passphrase: Passphrase.optional() }).strict();

/**
 * "Commit into backing file…": the disk's data written into its backing file; the disk emptied unless
 * `keepOverlay` (qemu-img commit -d). `backingFile` is the file the dialog named: refused, nothing
 * written, where the disk reads through another one by then. `passphrase` opens every encrypted file
 * of the chain (without it one is refused, LOCKED, before anything is written).
 */
export const CommitArgs = z.object({ keepOverlay: z.boolean().optional(), backingFile: AbsolutePath.optional(), passphrase: Passphrase.optional() }).strict();
/**
 * "Rebase…": the disk given another backing file (an absolute path, recorded as given), or none when
 * `backingFile` is absent. Safe by default (what the two chains read differently is copied into the
 * disk first); `unsafe` only rewrites the header (the backing file was moved or copied). A safe
 * rebase's `passphrase` opens every encrypted file of both chains (LOCKED without it where one is).
 */
export const RebaseArgs = z
  .object({ backingFile: AbsolutePath.optional(), backingFormat: z.enum(['qcow2', 'raw']).optional(), unsafe: z.boolean().optional(), passphrase: Passphrase.optional() })
  .strict()
  .refine((args) => args.backingFile === undefined || args.backingFormat !== undefined, BACKING_FORMAT_NEEDED);

/** A disk's new size in bytes: whole 512-byte sectors, as qemu-img requires of a qcow2 disk. */
export const DiskSize = z
  .number()
  .int()
  .positive()
  .max(2 ** 52)
  .refine((value) => value % 512 === 0, 'the size must be a whole number of 512-byte sectors');
/** What "Resize…" shows before it starts: the data each state holds past a smaller end. */
export const ResizePreviewArgs = z.object({ size: DiskSize }).strict();
/**
 * "Resize…", in place: a smaller size needs `shrink`, and data the current disk holds past the new
 * end is refused (DATA_PAST_END) unless `discardData`; snapshots keep their own size. `passphrase`
 * unlocks an encrypted disk whose old end must be read (a size that is not a whole cluster).
 */
export const ResizeImageArgs = z
  // discardBytes: with discardData, the data past the new end the user was shown; more is refused.
  .object({ size: DiskSize, shrink: z.boolean().optional(), discardData: z.boolean().optional(), discardBytes: z.number().int().nonnegative().optional(), passphrase: Passphrase.optional() })
  .strict()
  .refine((args) => args.discardData !== true || args.shrink === true, 'discarding data goes with a shrink')
  .refine((args) => args.discardBytes === undefined || args.discardData === true, 'a bound on the data discarded goes with discarding it');

/** A path inside a state's files, as `cowbell ls` takes it: starts with "/", no NUL, bounded. */
export const GuestPath = z
  .string()
  .min(1)
  .max(4096)
  .refine((value) => value.startsWith('/'), 'a path inside the disk starts with /')
  .refine((value) => !value.includes('\0'), 'path contains a NUL byte');
/** A LUKS header's UUID, as GuestVolumeInfo.encryption names the volume (printable, at most LUKS1's 40 bytes). */
export const LuksUuid = z.string().min(1).max(40).regex(/^[\x21-\x7e]+$/, 'a LUKS UUID is printable text');
/**
 * Passphrases of encrypted volumes inside the guest (LUKS), each for the volume whose header has
 * `uuid`; secrets like `passphrase` (secrets.ts scrubs them from every message).
 */
export const VolumePassphrases = z.array(z.object({ uuid: LuksUuid, passphrase: Passphrase }).strict()).max(16);
/**
 * One folder of a state ("current" or a snapshot's id, as the tree names its nodes), listed when it
 * is opened; an encrypted disk's passphrase, and those of encrypted volumes inside it. `stateDate`: the snapshot's creation time as the tree
 * showed it — a snapshot deleted and made again since may bear the same id, and is refused.
 */
export const FilesListArgs = z.object({ state: SnapshotName, stateDate: SnapshotDate.optional(), path: GuestPath, passphrase: Passphrase.optional(), volumePassphrases: VolumePassphrases.optional() }).strict();
/** "Compare files with…": two states' files ("current" or snapshot ids, with the times shown), added, removed and changed. */
export const FilesDiffArgs = z.object({ from: SnapshotName, fromDate: SnapshotDate.optional(), to: SnapshotName, toDate: SnapshotDate.optional(), passphrase: Passphrase.optional(), volumePassphrases: VolumePassphrases.optional() }).strict();
/**
 * "Restore…": one file or folder of a state copied to `target`, a new path in an existing folder
 * (never an existing one, never the disk itself); the disk is only read.
 */
export const FilesCopyOutArgs = z.object({ state: SnapshotName, stateDate: SnapshotDate.optional(), path: GuestPath, target: AbsolutePath, passphrase: Passphrase.optional(), volumePassphrases: VolumePassphrases.optional() }).strict();

/** Jobs: engine work on the worker pool. `access` decides the per-image reader/writer queue. */
export const jobSchemas = {
  'image.info': { access: 'read', args: Empty },
  /** `snapshotId` beside `snapshot` (its name) says which of two alike-named snapshots; `fromId`/`toId` likewise for image.diff. */
  'image.map': { access: 'read', args: z.object({ snapshot: z.string().max(1024).optional(), snapshotId: SnapshotId.optional(), snapshotDate: SnapshotDate.optional(), cells: z.number().int().min(1).max(65536) }).strict() },
  /** Makes a new image at the job's path (which must not exist yet): a write on that path. */
  'image.create': { access: 'write', args: CreateImageArgs },
  'image.usage': { access: 'read', args: Empty },
  'image.diff': { access: 'read', args: z.object({ from: SnapshotName, fromId: SnapshotId.optional(), fromDate: SnapshotDate.optional(), to: SnapshotName, toId: SnapshotId.optional(), toDate: SnapshotDate.optional() }).strict() },
  'image.check': { access: 'read', args: z.object({}).strict() },
  'image.repair': { access: 'write', args: z.object({ mode: z.enum(['leaks', 'all']) }).strict() },
  'snapshot.tree': { access: 'read', args: Empty },
  /** The tree from the snapshot table alone, at once: no space figures (null), undecided parents pending. */
  'snapshot.outline': { access: 'read', args: Empty },
  'snapshot.create': { access: 'write', args: z.object({ name: SnapshotName, note: SnapshotNote.optional() }).strict() },
  /** `discardUpTo`: the bytes in no snapshot the dialog showed the revert discards; more (written since) is refused, UNSAVED_DATA. */
  'snapshot.apply': { access: 'write', args: z.object({ name: SnapshotName, id: SnapshotId.optional(), date: SnapshotDate.optional(), discardUpTo: z.number().int().nonnegative().optional() }).strict() },
  'snapshot.delete': { access: 'write', args: z.object({ name: SnapshotName, id: SnapshotId.optional(), date: SnapshotDate.optional() }).strict() },
  'snapshot.rename': { access: 'write', args: z.object({ name: SnapshotName, id: SnapshotId.optional(), date: SnapshotDate.optional(), newName: SnapshotName }).strict() },
  /** Sets the snapshot's note ('' clears it): a new snapshot table, as a rename. */
  'snapshot.note': { access: 'write', args: z.object({ name: SnapshotName, id: SnapshotId.optional(), date: SnapshotDate.optional(), note: SnapshotNote }).strict() },
  'image.rewritePreview': { access: 'read', args: RewritePreviewArgs },
  /** Both replace the file (a new image is written beside it, checked, verified, renamed over it). */
  'image.compress': { access: 'write', args: CompressImageArgs },
  'image.compact': { access: 'write', args: CompactImageArgs },
  /** Rewrites like compact (a new file, checked, verified, renamed over the disk). */
  'image.encrypt': { access: 'write', args: EncryptImageArgs },
  'image.decrypt': { access: 'write', args: DecryptImageArgs },
  /** Changes the LUKS key slots in place, each step in an order a crash cannot spoil. */
  'image.passphrase': { access: 'write', args: ChangePassphraseArgs },
  'image.resizePreview': { access: 'read', args: ResizePreviewArgs },
  /** Changes the disk in place (a larger L1 table, or the clusters past a smaller end freed). */
  'image.resize': { access: 'write', args: ResizeImageArgs },
  /** Reads the disk at the job's path; the new file is `args.target`. */
  'snapshot.export': { access: 'read', args: ExportSnapshotArgs },
  /** Reads the disk at the job's path (never writes it); the new file is `args.target`. */
  'image.rescue': { access: 'read', args: RescueImageArgs },
  /** The disk's backing chain, top first; a missing or looping file ends it with a problem instead of failing. */
  'chain.read': { access: 'read', args: Empty },
  /** Writes the backing file too (which the engine locks for writing: refused while anything else uses it). */
  'chain.commit': { access: 'write', args: CommitArgs },
  'chain.rebase': { access: 'write', args: RebaseArgs },
  'files.list': { access: 'read', args: FilesListArgs },
  'files.diff': { access: 'read', args: FilesDiffArgs },
  /** Reads the disk at the job's path (never writes it); the new file or folder is `args.target`. */
  'files.copyOut': { access: 'read', args: FilesCopyOutArgs },
} as const;

/** One folder of a state, and the state's volumes (what the root shows). */
export interface GuestFolderListing {
  state: string;
  path: string;
  volumes: GuestVolumeInfo[];
  entries: GuestFileEntry[];
}

/** A finished restore: where the copy is and what it holds. */
export interface FilesCopyOutResult {
  target: string;
  kind: 'file' | 'directory' | 'symlink';
  files: number;
  folders: number;
  symlinks: number;
  bytes: number;
  /** Entries not copied (device files, sockets, names unusable here) and why. */
  skipped: { path: string; reason: string }[];
}

/** A finished commit: the file written into, the guest bytes it received, its size before it grew to the disk's (null: not grown), and whether the disk was emptied. */
export interface CommitSummary {
  base: string;
  committedBytes: number;
  grownFrom: number | null;
  emptied: boolean;
}

/** A finished rebase: guest bytes compared between the two chains, and those copied into the disk. */
export interface RebaseSummary {
  comparedBytes: number;
  copiedBytes: number;
}

/** The dialog's figures before a compress or compact: the file now, the estimate after, the room there is. */
export interface RewritePreview {
  fileBytes: number;
  /** The likely size after, from a sample of clusters: an estimate. */
  expectedBytes: number;
  /** The size after can be no larger than this. */
  maxBytes: number;
  sampledClusters: number;
  /** Free space beside the disk; null where the platform cannot tell. */
  freeBytes: number | null;
  snapshots: number;
  /** The compressed data of every state, each cluster once (Encrypt… stores it uncompressed). */
  compressed: CompressedData;
}

/** A passphrase change: the LUKS key slots in use afterwards, the one added and those erased. */
export interface PassphraseChange {
  activeSlots: number[];
  added: number | null;
  removed: number[];
}

/** A snapshot saved as a new disk. */
export interface SnapshotExport {
  target: string;
  format: 'qcow2' | 'raw';
  virtualSize: number;
  /** The new file's size (a raw file is as long as the disk, sparse where the drive allows). */
  fileBytes: number;
}

export { MAX_REPORTED_RANGES } from '../qcow2/model.ts';

/** A rescue copy: where it went, and what of the disk could not be read (zeros in the copy). */
export interface RescueReport {
  target: string;
  format: 'qcow2' | 'raw';
  virtualSize: number;
  fileBytes: number;
  unreadableBytes: number;
  unreadableRangeCount: number;
  /** The first MAX_REPORTED_RANGES ranges, in guest order. */
  unreadable: UnreadableRange[];
}

export interface JobResults {
  'image.info': ImageInfo;
  'image.map': AllocationMap;
  'image.create': ImageInfo;
  'image.usage': UsageReport;
  'image.diff': DiffResult;
  'image.check': CheckResult;
  'image.repair': CheckResult;
  'snapshot.tree': SnapshotTree;
  'snapshot.outline': SnapshotTree;
  'snapshot.create': { id: string; name: string };
  'snapshot.apply': null;
  'snapshot.delete': null;
  'snapshot.rename': null;
  'snapshot.note': null;
  'image.rewritePreview': RewritePreview;
  'image.compress': RewriteSummary;
  'image.compact': RewriteSummary;
  'image.encrypt': RewriteSummary;
  'image.decrypt': RewriteSummary;
  'image.passphrase': PassphraseChange;
  'snapshot.export': SnapshotExport;
  'image.rescue': RescueReport;
  'chain.read': BackingChain;
  'chain.commit': CommitSummary;
  'chain.rebase': RebaseSummary;
  'image.resizePreview': ResizePreview;
  'image.resize': ResizeResult;
  'files.list': GuestFolderListing;
  'files.diff': GuestFilesDiff;
  'files.copyOut': FilesCopyOutResult;
}

export type JobKind = keyof typeof jobSchemas;

export function isJobKind(value: string): value is JobKind {
  return Object.hasOwn(jobSchemas, value);
}
export type JobArgs<K extends JobKind> = z.infer<(typeof jobSchemas)[K]['args']>;
export type JobResult<K extends JobKind> = JobResults[K];

export const JobStartRequest = z.object({
  kind: z.enum(Object.keys(jobSchemas) as [JobKind, ...JobKind[]]),
  path: AbsolutePath,
  args: z.unknown(),
  /** The job in words, as the jobs panel shows it: handed back by job.list to a window that did not start it. */
  title: z.string().max(300).optional(),
});

/** A job running (or queued) in main, as job.list tells a window that opened after it started. */
export interface RunningJob {
  jobId: string;
  kind: JobKind;
  path: string;
  title: string | null;
}

/** Requests: answered directly (they may still use the pool, but have no progress). */
export const requestSchemas = {
  'app.about': Empty,
  'app.initialPaths': Empty,
  'image.open': z.object({ path: AbsolutePath }).strict(),
  'dialog.openImages': Empty,
  'path.complete': z.object({ prefix: z.string().max(4096) }).strict(),
  'job.start': JobStartRequest,
  'job.cancel': z.object({ jobId: z.string().min(1).max(64) }).strict(),
  /** The jobs main is running, started from any window (a page reloaded mid-job shows them again). */
  'job.list': Empty,
  /** Re-read a disk another program changes: main emits `image.changed` while it is watched. */
  'image.watch': z.object({ path: AbsolutePath }).strict(),
  'image.unwatch': z.object({ path: AbsolutePath }).strict(),
  /** Whether paths exist (the recent-disks list shows missing ones as missing). */
  'path.stat': z.object({ paths: z.array(AbsolutePath).max(256) }).strict(),
  /** The recent disks for Electron's File > Open Recent menu; browser mode has no menu and ignores it. */
  'menu.recent': z.object({ paths: z.array(AbsolutePath).max(32) }).strict(),
  /** "Open Folder" after a restore: shows a copy Cowbell made (only those) in the system's file manager. */
  'path.reveal': z.object({ path: AbsolutePath }).strict(),
} as const;

export interface PathCompletion {
  path: string;
  kind: 'folder' | 'image';
}

export interface PathStat {
  path: string;
  kind: 'file' | 'folder' | 'other' | 'missing';
}

/** What the application menu (Electron) asks the page to do. */
export const MENU_COMMANDS = [
  'open',
  'open-path',
  'close',
  'snapshot.take',
  'snapshot.revert',
  'snapshot.delete',
  'snapshot.rename',
  'snapshot.note',
  'snapshot.export',
  'disk.create',
  'disk.check',
  'disk.compress',
  'disk.compact',
  'disk.encrypt',
  'disk.decrypt',
  'disk.passphrase',
  'disk.rescue',
  'disk.linked-clone',
  'disk.commit',
  'disk.rebase',
  'disk.resize',
  'view.fit',
  'view.current',
  'view.zoom-in',
  'view.zoom-out',
  'view.jobs',
  'about',
] as const;
export type MenuCommandName = (typeof MENU_COMMANDS)[number];
/** `path` is set for `open-path` (File > Open Recent). */
export interface MenuCommand {
  command: MenuCommandName;
  path?: string;
}

export interface AppAbout {
  name: string;
  version: string;
  mode: 'electron' | 'browser';
  platform: string;
}

export interface RequestReplies {
  'app.about': AppAbout;
  'app.initialPaths': string[];
  'image.open': ImageInfo;
  'dialog.openImages': string[];
  'path.complete': PathCompletion[];
  'job.start': { jobId: string };
  'job.cancel': { cancelled: boolean };
  'job.list': RunningJob[];
  'image.watch': null;
  'image.unwatch': null;
  'path.stat': PathStat[];
  'menu.recent': null;
  /** False where there is no file manager to show it in (browser mode). */
  'path.reveal': { revealed: boolean };
}

export type RequestName = keyof typeof requestSchemas;
export type RequestArgs<N extends RequestName> = z.infer<(typeof requestSchemas)[N]>;
export type RequestReply<N extends RequestName> = RequestReplies[N];

/** An error as it crosses a process or thread boundary. */
export interface WireError {
  code: ErrorCode | 'INVALID_REQUEST';
  message: string;
}

export type Reply<T> = { ok: true; value: T } | { ok: false; error: WireError };

export interface JobProgress {
  jobId: string;
  stage: string;
  done: number;
  total: number;
  unit: 'bytes' | 'steps';
}

export type JobEnd = { jobId: string; ok: true; result: unknown } | { jobId: string; ok: false; error: WireError };

export interface EventPayloads {
  'job.progress': JobProgress;
  'job.end': JobEnd;
  'image.changed': { path: string };
  'menu.command': MenuCommand;
  /** Disks to open that arrived after the page asked for its initial paths: a second launch, or macOS's open-file. */
  'app.openPaths': { paths: string[] };
}

export type EventName = keyof EventPayloads;

/** What `window.cowbell` offers the renderer, in both Electron and browser mode. */
export interface CowbellApi {
  request<N extends RequestName>(name: N, args: RequestArgs<N>): Promise<RequestReply<N>>;
  on<E extends EventName>(event: E, listener: (payload: EventPayloads[E]) => void): () => void;
  /** Electron only (webUtils.getPathForFile): the path of a file dropped on the window. */
  pathForFile?(file: File): string;
}

export type { AllocationMap, BackingChain, CheckResult, DiffResult, GuestFileDifference, GuestFileEntry, GuestFilesDiff, GuestVolumeInfo, ImageInfo, MapEntry, RepairLoss, ResizePreview, ResizeResult, RewriteSummary, SnapshotTree, UnreadableRange, UsageReport };

/**
 * Browser mode's WebSocket protocol (ws://127.0.0.1:PORT/ws?session=KEY, the key the printed address's one-time token was traded for), JSON text frames.
 * The renderer's bridge sends `request`; the server answers each with `reply` (same id) and
 * pushes `event` frames for every EventName.
 */
export type BridgeClientMessage = { type: 'request'; id: number; name: string; args: unknown };
export type BridgeServerMessage =
  | { type: 'reply'; id: number; reply: Reply<unknown> }
  | { type: 'event'; event: EventName; payload: unknown };
