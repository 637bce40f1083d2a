/**
 * Rewriting an image with every snapshot: compress, compact, and convert to qcow2 keeping the
 * snapshots. The source is held with QEMU's locks so that nobody writes it meanwhile (a VM cannot
 * start on it); the new image is written under a temporary name next to the target (plan.ts, then
 * write-image.ts), checked for consistency, compared state by state with the source (verify.ts),
 * made durable and only then renamed over the target — the source itself when rewriting in place.
 * A cancel, an error, a full disk or a crash at any moment leaves the source as it was; a
 * temporary file a crash left behind is removed by the next write of the same target.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inlineCompressor, threadedCompressor, type ClusterCompressor } from '../codec/cluster-compressor.ts';
import type { CompressionType } from '../codec/compression.ts';
import { checkImage } from '../check/check.ts';
import { Qcow2Error } from '../errors.ts';
import { writeFileAtomicallySteps, type AtomicFileSystem } from '../io/atomic-file.ts';
import { NodeBlockFile, type BlockFile } from '../io/block-file.ts';
import { descriptorOf } from '../io/fail-stop-file.ts';
import { refuseReplacingGuarded } from '../io/image-lock.ts';
import { sameFile } from '../io/file-identity.ts';
import { holeAwareSource } from '../io/hole-aware-file.ts';
import { freeBytesFor } from '../io/free-space.ts';
import { readsThrough } from '../image/backing-files.ts';
import { refusePassphraseTheChainLacks } from '../image/chain-passphrase.ts';
import { refuseUnsoundMetadata } from '../image/change-validation.ts';
import { lockedError, Qcow2Image } from '../image/image.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { CompressedData, RewriteSummary } from '../model.ts';
import { runSteps, runStepsYielding, type Steps } from '../steps.ts';
import { defaultBatchClusters, estimateOutputSize, type SizeEstimate } from './estimate.ts';
import { assertRewritable, outputHeader } from './output-header.ts';
import { compressedData, planRewrite, type RewritePlan } from './plan.ts';
import { createLuks, newLuksAreaBytes, type CreateLuksOptions, type LuksCipherChoice, type NewLuksArea, type Passphrase } from '../crypto/luks-keys.ts';
import { luksDiskCipher, type DiskCipher } from '../crypto/disk-cipher.ts';
import { parseCryptoHeaderExtension } from '../format/crypto-header-extension.ts';
import { EXT_CRYPTO_HEADER, findExtension } from '../format/header.ts';
import { treeParents } from '../snapshots/snapshot-tree.ts';
import { startEarlyVerifier, type EarlyVerifier } from './early-verify.ts';
import { verifyRewriteSteps } from './verify.ts';
import { writeRewrittenImage, type CompressionPolicy, type WriteImageOptions } from './write-image.ts';

export type { CompressionPolicy } from './write-image.ts';

export interface RewriteRequest {
  source: string;
  /**
   * How the caller last saw the source encrypted (the app's dialogs): a disk encrypted otherwise
   * since — another window encrypted it — is refused before anything is read or written.
   */
  expectedEncryption?: 'none' | 'aes' | 'luks';
  /** Where the new image goes; absent (or the source's own path) rewrites the source in place. */
  target?: string;
  /** 'compress': every data cluster compressed where that saves space; 'keep': as stored; 'uncompress': none compressed. */
  compression: CompressionPolicy;
  /** The new image's compression type (zstd needs compat 1.1); the source's by default. */
  compressionType?: CompressionType;
  /**
   * The new image's qcow2 version, the source's by default: 3 (compat 1.1) upgrades a version 2
   * disk, as `qemu-img amend -o compat=1.1` does; back from 3 to 2 is refused (UNSUPPORTED_FEATURE).
   */
  version?: 2 | 3;
  /** Threads compressing (the caller's own included); helper threads run compress-worker.ts. */
  compressionThreads?: number;
  /** Where the compressing helper thread's module is, for bundles that move it (the app's). */
  compressWorker?: URL | string;
  /** How long the first batch waits for the compressing helpers to start before going on without them (tests on a loaded machine wait longer). */
  compressStartMs?: number;
  /** Where the early-comparing helper thread's module is (early-verify-worker.ts), for bundles that move it. */
  earlyVerifyWorker?: URL | string;
  /** How long the end waits for that helper to start before leaving everything to the final comparison (tests on a loaded machine wait longer). */
  earlyVerifyStartMs?: number;
  /** Leave persistent dirty bitmaps behind instead of refusing. */
  dropBitmaps?: boolean;
  /** An encrypted source's passphrase (its data is read, so it is needed: LOCKED without it). */
  passphrase?: Passphrase;
  /** Go on with a legacy AES passphrase under which the disk's start decrypts to noise (image.ts OpenImageOptions). */
  trustLegacyPassphrase?: boolean;
  /**
   * The new image's encryption. 'same' (the default): a LUKS image stays LUKS under the same key
   * slots and master key, a plain one plain. 'luks': encrypted afresh under a new master key and
   * passphrase (`cowbell encrypt`; also how a legacy AES disk migrates). 'none': decrypted.
   */
  encryption?: OutputEncryption;
  /** Compare every state of the new image with the source before it replaces anything (default true). */
  verify?: boolean;
  /**
   * Start that comparison on a helper thread while the copy goes on (early-verify.ts; default
   * true): the same check, mostly done by the time the copy ends. False leaves it all to the end.
   */
  earlyVerify?: boolean;
  /** Tests: the least data (bytes) a disk holds for the early comparison to start (by default 32 MiB: less would not pay for the thread). */
  earlyVerifyFromBytes?: number;
  /** Replace an existing target that is not the source (by default an error). */
  overwrite?: boolean;
  /**
   * Flush a new output to disk before it takes its name (default true); false is qemu-img's cache
   * mode "unsafe". A file being replaced — the source itself above all — is always flushed first.
   */
  durable?: boolean;
  /** Test seams. */
  fileSystem?: AtomicFileSystem;
  openFile?: (filePath: string) => BlockFile;
  batchClusters?: number;
  /** Bytes free where the output goes; by default asked of the file system. */
  freeBytes?: () => number | null;
}

export type OutputEncryption = { kind: 'same' } | { kind: 'none' } | ({ kind: 'luks'; passphrase: Passphrase } & Omit<CreateLuksOptions, 'job'>);

/** What the engine returns: the summary the app shows, and where the new image went and how it was made. */
export interface RewriteResult extends RewriteSummary {
  target: string;
  inPlace: boolean;
  /** Threads that compressed (1 when nothing was compressed, or no helper thread could start). */
  compressionThreads: number;
  /** The source's compressed data, now stored uncompressed (`uncompress`, or an encrypted new image: QEMU cannot keep it encrypted); null when there was none or it stayed compressed. */
  storedUncompressed: CompressedData | null;
}

/** Room kept free beside the new image, for the file system's own needs. */
const SPACE_MARGIN_BYTES = 16 * 1024 * 1024;

export function rewriteImage(request: RewriteRequest, job: JobContext = silentJob): RewriteResult {
  return runSteps(rewriteSteps(request, job));
}

/** rewriteImage for a thread whose event loop must keep turning (the CLI's, for Ctrl-C). */
export function rewriteImageYielding(request: RewriteRequest, job: JobContext = silentJob): Promise<RewriteResult> {
  return runStepsYielding(rewriteSteps(request, job));
}

/** What a rewrite of `source` would give, without writing anything: for the app's dialog. */
export interface RewritePreview extends SizeEstimate {
  fileBytes: number;
  freeBytes: number | null;
  snapshots: number;
  /** The compressed data of every state: Encrypt… stores it uncompressed, and says so only when there is some. */
  compressed: CompressedData;
}

/** The new image's encryption as a preview needs it: a new key's passphrase plays no part in the size. */
export type PreviewEncryption = { kind: 'same' } | { kind: 'none' } | { kind: 'luks'; cipher?: LuksCipherChoice };

export function previewRewrite(
  request: Pick<RewriteRequest, 'source' | 'target' | 'compression' | 'compressionType' | 'version' | 'dropBitmaps' | 'openFile' | 'passphrase' | 'trustLegacyPassphrase' | 'batchClusters'> & { encryption?: PreviewEncryption },
  job: JobContext = silentJob,
): RewritePreview {
  const image = openSource(request, 'none', job);
  try {
    const compressionType = request.compressionType ?? image.header.compressionType;
    assertRewritable(image.header, { dropBitmaps: request.dropBitmaps ?? false, compressionType, version: request.version ?? image.header.version });
    // What the rewrite would refuse, the preview refuses. A disk still locked is estimated from its
    // metadata alone: its clusters' bytes would be ciphertext, so no sample is taken (the bound is the estimate).
    const encryption = outputEncryption(image, request.encryption ?? { kind: 'same' }, request.compression, false);
    const plan = planRewrite(image, job);
    const locked = image.header.cryptMethod !== 0 && image.cipher === null;
    const estimate = estimateOutputSize(image, plan, {
      policy: request.compression,
      compressionType,
      version: request.version,
      sampleSize: locked ? 0 : undefined,
      batchClusters: request.batchClusters,
      luksAreaBytes: outputLuksAreaBytes(image, encryption),
    });
    return { ...estimate, fileBytes: image.file.size(), freeBytes: freeBytesFor(request.target ?? request.source), snapshots: image.snapshots.length, compressed: compressedData(image, plan) };
  } finally {
    image.close();
  }
}

export function* rewriteSteps(request: RewriteRequest, job: JobContext): Steps<RewriteResult> {
  const target = request.target ?? request.source;
  const inPlace = sameFile(target, request.source);
  if (!inPlace && request.overwrite !== true && fs.existsSync(target)) throw new Qcow2Error('INVALID_ARGUMENT', `${target} already exists; choose another name`);
  // In place, the file replaced is the source itself, not a symbolic link that leads to it.
  const replaced = inPlace && request.fileSystem === undefined ? realPath(request.source) : target;
  const links = inPlace && request.fileSystem === undefined ? (statOf(replaced)?.nlink ?? 1) : 1;
  if (links > 1) refuseSplittingLinks(request.source, links - 1);
  if (inPlace && request.fileSystem === undefined) refuseWithoutWriteAccess(replaced);
  const image = openSource(request, inPlace ? 'replacing' : 'guard', job);
  let newKey: NewLuksArea | null = null;
  try {
    refuseChangedEncryption(image, request.expectedEncryption);
    const compressionType = request.compressionType ?? image.header.compressionType;
    const dropBitmaps = request.dropBitmaps ?? false;
    const version = request.version ?? image.header.version;
    assertRewritable(image.header, { dropBitmaps, compressionType, version });
    // Tables that overlap, point past the file or share a cluster beyond the refcount width would
    // make a copy that fails its own check: refuse before writing anything, and say to repair.
    refuseUnsoundMetadata(image, { storedRefcounts: false });
    // The copy would name itself as its backing file, and the disk would lose what it reads through it.
    if (!inPlace && fs.existsSync(replaced) && readsThrough(image, replaced)) {
      throw new Qcow2Error('INVALID_ARGUMENT', `${target} is a file ${request.source} reads through (its backing file, or one below it); replacing it would lose the data the disk reads there, so choose another name`);
    }
    const encryption = outputEncryption(image, request.encryption ?? { kind: 'same' }, request.compression);
    if (encryption.kind === 'luks') refusePassphraseTheChainLacks(image, encryption.passphrase, job);
    job.progress('reading the mapping tables', 0, 1, 'steps');
    const plan = planRewrite(image, job);
    const tree = treeParents(image, job);
    const beforeBytes = image.file.size();
    const batchClusters = Math.max(1, request.batchClusters ?? defaultBatchClusters(image));
    const luksAreaBytes = outputLuksAreaBytes(image, encryption);
    assertRoom(replaced, (sampleSize) => estimateOutputSize(image, plan, { policy: request.compression, compressionType, batchClusters, luksAreaBytes, sampleSize, version }), request.freeBytes);
    const header = outputHeader(image.header, { sourcePath: request.source, targetPath: target, compressionType, dropBitmaps, encryption: encryption.kind === 'none' ? 'none' : 'luks', version });
    let luks: WriteImageOptions['luks'] = null;
    if (encryption.kind === 'same') luks = { area: readLuksArea(image), cipher: sourceCipher(image) };
    else if (encryption.kind === 'luks') {
      job.progress('making the new key', 0, 1, 'steps');
      const { passphrase, ...options } = encryption;
      newKey = createLuks(passphrase, { ...options, job });
      luks = { area: newKey.area, cipher: luksDiskCipher(newKey.header, newKey.masterKey) };
      newKey.masterKey.fill(0);
    }
    const verify = request.verify ?? true;
    // Flushed at the end (the atomic writer also flushes a file replacing another it was not told of).
    const durable = (request.durable ?? true) || inPlace;
    return yield* writeFileAtomicallySteps(
      replaced,
      function* (file, temporaryPath) {
        const compressor = request.compression === 'compress' ? makeCompressor(request, compressionType, image.clusterBytes, batchClusters) : null;
        const earlyVerifier = verify && (request.earlyVerify ?? true) && luks === null && worthVerifyingEarly(image, plan, request.earlyVerifyFromBytes) ? startEarlyVerifier(image.file, file, image.clusterBytes, compressionType, request.earlyVerifyWorker, request.earlyVerifyStartMs) : null;
        try {
          let written;
          let compressionThreads: number;
          try {
            written = yield* writeRewrittenImage(image, file, plan, { header, compression: request.compression, compressionType, compressor, batchClusters, tree, luks, startWriteback: durable, earlyVerifier }, job);
          } finally {
            compressor?.close();
            compressionThreads = compressor?.threadsReady() ?? 1;
          }
          yield;
          yield* checkOutput(image, file, temporaryPath, verify, job, luks?.cipher ?? null, earlyVerifier);
          const result: RewriteResult = {
            target,
            inPlace,
            beforeBytes,
            afterBytes: written.fileBytes,
            snapshots: image.snapshots.length,
            storedClusters: written.storedClusters,
            compressedClusters: written.compressedClusters,
            zeroClusters: written.zeroClusters,
            verified: verify,
            encryption: luks === null ? 'none' : 'luks',
            compressionThreads,
            upgradedToVersion3: header.version === 3 && image.header.version === 2,
            storedUncompressed: (luks !== null || request.compression === 'uncompress') && plan.compressedClusters > 0 ? compressedData(image, plan) : null,
          };
          return result;
        } finally {
          earlyVerifier?.close();
        }
      },
      {
        overwrite: inPlace || request.overwrite === true,
        replacingOwnSource: inPlace,
        // A copy into a new OUTPUT (a decrypted one above all) opens to no one the disk was closed to.
        sourceMode: request.fileSystem === undefined ? statOf(request.source)?.mode : undefined,
        fileSystem: request.fileSystem,
        durable: request.durable ?? true,
        beforeCommit: () => {
          job.throwIfCancelled();
          // The guard kept writers off the disk, not readers: a VM may have started on an overlay of it meanwhile.
          const guardFd = inPlace ? descriptorOf(image.file) : null;
          if (guardFd !== null) refuseReplacingGuarded(guardFd);
        },
      },
    );
  } finally {
    newKey?.area.fill(0);
    image.close();
  }
}

/**
 * What the new image's encryption can be, refused up front where it cannot: QEMU stores compressed
 * clusters of an encrypted image unencrypted, so encrypted data is never compressed; Cowbell writes
 * no legacy AES image; an encrypted source's data needs its passphrase.
 */
function outputEncryption<Asked extends OutputEncryption | PreviewEncryption>(image: Qcow2Image, asked: Asked, compression: CompressionPolicy, needsData = true): { kind: 'same' } | { kind: 'none' } | Extract<Asked, { kind: 'luks' }> {
  const encrypted = image.header.cryptMethod !== 0;
  const resolved = asked.kind === 'same' && !encrypted ? { kind: 'none' as const } : asked;
  // What cannot be done at all is said before asking for what is missing (the passphrase).
  if (resolved.kind === 'same' && image.header.cryptMethod === 1) {
    throw new Qcow2Error('UNSUPPORTED_FEATURE', 'This disk uses the old qcow2 AES encryption, which QEMU no longer boots and Cowbell does not write: encrypt it afresh (LUKS, `cowbell encrypt`) or decrypt it');
  }
  if (resolved.kind !== 'none' && compression === 'compress') {
    throw new Qcow2Error('INVALID_ARGUMENT', 'An encrypted disk cannot be compressed: QEMU would store its compressed clusters unencrypted. Decrypt it first, or compact it instead');
  }
  if (needsData && encrypted && image.cipher === null) throw lockedError();
  return resolved as { kind: 'same' } | { kind: 'none' } | Extract<Asked, { kind: 'luks' }>;
}

const ENCRYPTION_NAMES = ['none', 'aes', 'luks'] as const;

function refuseChangedEncryption(image: Qcow2Image, expected: RewriteRequest['expectedEncryption']): void {
  const now = ENCRYPTION_NAMES[image.header.cryptMethod] ?? 'luks';
  if (expected === undefined || now === expected) return;
  const words = { none: 'not encrypted', aes: 'encrypted with the old qcow2 AES', luks: 'encrypted with LUKS' };
  throw new Qcow2Error('INVALID_ARGUMENT', `The disk has changed since this was asked: it is ${words[now]} now (another window or program changed it); nothing was changed`);
}

/** The length of the new image's LUKS area: the source's kept as it is, or a new one for the cipher asked for. */
function outputLuksAreaBytes(image: Qcow2Image, encryption: { kind: 'same' } | { kind: 'none' } | { kind: 'luks'; cipher?: LuksCipherChoice }): number {
  if (encryption.kind === 'none') return 0;
  if (encryption.kind === 'luks') return newLuksAreaBytes(encryption.cipher);
  const extension = findExtension(image.header, EXT_CRYPTO_HEADER);
  return extension === undefined ? 0 : parseCryptoHeaderExtension(extension.data, image.clusterBytes).length;
}

/** The source's LUKS area, as it is (header and key material), for a new image under the same key. */
function readLuksArea(image: Qcow2Image): Uint8Array {
  const extension = findExtension(image.header, EXT_CRYPTO_HEADER);
  if (extension === undefined) throw new Qcow2Error('CORRUPT', 'The image is LUKS-encrypted but has no encryption header extension');
  const area = parseCryptoHeaderExtension(extension.data, image.clusterBytes);
  const bytes = new Uint8Array(area.length);
  if (image.file.read(bytes, area.offset) < bytes.length) throw new Qcow2Error('TRUNCATED', 'The LUKS area is cut short: the image is truncated');
  return bytes;
}

function sourceCipher(image: Qcow2Image): DiskCipher {
  if (image.cipher === null) throw lockedError();
  return image.cipher;
}

/**
 * The L2 cache of the source and of the new image: every phase (plan, copy, check, comparison)
 * walks each distinct table once, in order, so a table is rarely asked for twice in a row and a
 * large cache only holds what was passed. With the default 32 MiB each, a disk of 1,000 snapshots
 * (a copied L2 table each) filled both, and the rewrite peaked at 263 MiB.
 */
const REWRITE_L2_CACHE_BYTES = 4 * 1024 * 1024;

/**
 * The source, read-only. Held (when it will be replaced or copied) with locks that keep every
 * writer out until it is closed: a VM cannot start writing it halfway through the copy.
 */
function openSource(request: Pick<RewriteRequest, 'source' | 'openFile' | 'passphrase' | 'trustLegacyPassphrase'>, guard: 'none' | 'guard' | 'replacing', job: JobContext): Qcow2Image {
  const { openFile } = request;
  const image = Qcow2Image.open(request.source, {
    readOnly: true,
    openBacking: false,
    cacheBytes: { l2Tables: REWRITE_L2_CACHE_BYTES },
    // Refused in words that offer no -U: a rewrite has none (its copy must be of one moment).
    refuseInUse: 'changing',
    passphrase: request.passphrase,
    trustLegacyPassphrase: request.trustLegacyPassphrase,
    job,
    // Guarded, no one else writes it while it is open: its holes can be known once (a disk
    // preallocated with metadata maps clusters the file never wrote).
    openFile: (filePath) => openFile?.(filePath) ?? guardedSource(NodeBlockFile.open(filePath, guard === 'none' ? { readOnly: true } : { guard: true, replacing: guard === 'replacing' }), guard),
  });
  return image;
}

function guardedSource(file: NodeBlockFile, guard: 'none' | 'guard' | 'replacing'): BlockFile {
  return guard === 'none' ? file : holeAwareSource(file);
}

function statOf(filePath: string): fs.Stats | null {
  try {
    return fs.statSync(filePath);
  } catch {
    return null;
  }
}

/**
 * An in-place rewrite replaces the file by a rename, which the folder's permission allows even
 * where the file's own does not: a disk its user may not write (a read-only file, another user's)
 * is refused as any other change to it is.
 */
function refuseWithoutWriteAccess(filePath: string): void {
  try {
    fs.accessSync(filePath, fs.constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') return;
    throw new Qcow2Error(code === 'EROFS' ? 'READ_ONLY' : 'PERMISSION_DENIED', `${filePath}: ${code === 'EROFS' ? 'the file system is read-only' : 'you may not write this disk (its permissions)'}, so it cannot be rewritten in place; write to a new file (OUTPUT) instead`, { cause: error });
  }
}

/**
 * The new image replaces one name of the file by a rename; other names (hard links) would go on
 * naming the old file — after an encrypt, the disk's data in the clear. Refused before anything is
 * written: QEMU's own in-place changes write into the file, which every name shares.
 */
function refuseSplittingLinks(source: string, otherNames: number): never {
  const others = otherNames === 1 ? 'another name (a hard link)' : `${otherNames} other names (hard links)`;
  throw new Qcow2Error('INVALID_ARGUMENT', `${source} has ${others}: a rewrite in place would give the new disk to this name only, and the other would keep the old one; write to a new file (OUTPUT) instead, or remove the other names first`);
}

function realPath(filePath: string): string {
  try {
    return fs.realpathSync.native(filePath);
  } catch {
    return filePath;
  }
}

/** Refuses up front (NO_SPACE, nothing written) when the new image will not fit beside the old one. */
/**
 * Refuses with NO_SPACE, before anything is written, where the new disk would not fit beside the
 * old. `estimate(0)` is the bound from the tables alone; a sample of the data (tens of milliseconds
 * of reading, and compressing for compress) is taken only when that bound does not fit.
 */
function assertRoom(target: string, estimate: (sampleSize?: number) => SizeEstimate, freeBytes: RewriteRequest['freeBytes']): void {
  let free: number | null;
  try {
    free = freeBytes !== undefined ? freeBytes() : freeBytesFor(target);
  } catch (error) {
    // A missing folder: the atomic writer says so, naming the target.
    if (error instanceof Qcow2Error && error.code === 'NOT_FOUND') return;
    throw error;
  }
  if (free === null) return;
  if (estimate(0).maxBytes + SPACE_MARGIN_BYTES <= free) return;
  const needed = estimate().expectedBytes + SPACE_MARGIN_BYTES;
  if (needed > free) {
    const mib = (bytes: number): string => `${Math.ceil(bytes / (1024 * 1024))} MiB`;
    throw new Qcow2Error('NO_SPACE', `The new disk needs about ${mib(needed)} next to ${path.basename(target)} but only ${mib(free)} is free; free some space and try again (nothing was changed)`);
  }
}

/** Data below which a helper thread (tens of milliseconds to start) would not pay for itself. */
const EARLY_VERIFY_MIN_BYTES = 32 * 1024 * 1024;

function worthVerifyingEarly(image: Qcow2Image, plan: RewritePlan, fromBytes = EARLY_VERIFY_MIN_BYTES): boolean {
  return image.header.cryptMethod === 0 && !image.l2Format.extendedL2 && (plan.dataClusters + plan.compressedClusters) * image.clusterBytes >= fromBytes;
}

function makeCompressor(request: RewriteRequest, type: CompressionType, clusterBytes: number, batchClusters: number): ClusterCompressor {
  const threads = Math.max(1, Math.floor(request.compressionThreads ?? 1));
  if (threads === 1) return inlineCompressor(type, clusterBytes);
  return threadedCompressor(type, clusterBytes, batchClusters, threads - 1, request.compressWorker, request.compressStartMs);
}

/**
 * The new image, opened afresh from what was written: its refcounts must be exact (check finds
 * no corruption and no leak) and, unless told not to, every state must read as the source's.
 */
function* checkOutput(source: Qcow2Image, file: BlockFile, temporaryPath: string, verify: boolean, job: JobContext, cipher: DiskCipher | null, earlyVerifier: EarlyVerifier | null): Steps<void> {
  const output = Qcow2Image.openFile(readOnlyView(file, temporaryPath), { readOnly: true, openBacking: false, cipher: cipher ?? undefined, cacheBytes: { l2Tables: REWRITE_L2_CACHE_BYTES } });
  // The cipher is the writer's (and maybe the source's): the check only borrows it.
  if (cipher !== null) output.cipher = { kind: cipher.kind, decrypt: (...args) => cipher.decrypt(...args), encrypt: (...args) => cipher.encrypt(...args), close: () => {} };
  try {
    job.progress('checking', 0, 1, 'steps');
    const check = checkImage(output, {}, job);
    const problems = (check.corruptions ?? 0) + (check.leaks ?? 0) + check['check-errors'];
    if (problems > 0) throw new Qcow2Error('INTERNAL', `The rewritten disk failed its consistency check (${problems} problems); the original was left as it was`);
    yield;
    // Asked only now: the helper thread went on comparing while the check ran.
    if (!verify) return;
    earlyVerifier?.finish();
    yield* verifyRewriteSteps(source, output, job, earlyVerifier === null ? undefined : { plain: earlyVerifier.confirmed, compressed: earlyVerifier.confirmedCompressed });
  } finally {
    output.close();
  }
}

/** The file being written, read through without closing it. */
function readOnlyView(file: BlockFile, filePath: string): BlockFile {
  const refuse = (): never => {
    throw new Qcow2Error('INTERNAL', 'rewrite: the check tried to write the new image');
  };
  return {
    path: filePath,
    readOnly: true,
    read: (buffer, position) => file.read(buffer, position),
    write: refuse,
    truncate: refuse,
    flush: () => {},
    size: () => file.size(),
    close: () => {},
  };
}
