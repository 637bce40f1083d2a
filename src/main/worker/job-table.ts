import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import {
  changeSnapshotName,
  changeSnapshotNote,
  readDiff,
  readImageInfo,
  readSnapshotOutline,
  readSnapshotTree,
  readUsage,
  removeSnapshot,
  revertToSnapshot,
  takeSnapshot,
} from '../../shared/qcow2/index.ts';
import type { RescueReport, RewriteSummary } from '../../shared/ipc/contract.ts';
import { MAX_REPORTED_RANGES } from '../../shared/qcow2/model.ts';
import { readAllocationMap } from '../../shared/qcow2/snapshots/allocation-map.ts';
import { readBackingChain } from '../../shared/qcow2/chain/chain.ts';
import { commitSteps } from '../../shared/qcow2/chain/commit.ts';
import { rebaseSteps } from '../../shared/qcow2/chain/rebase.ts';
import { runSteps } from '../../shared/qcow2/steps.ts';
import { checkImagePath } from '../../shared/qcow2/check/check.ts';
import type { CompressionType } from '../../shared/qcow2/codec/compression.ts';
import { convertImage, type ConvertResult } from '../../shared/qcow2/convert/convert.ts';
import { createImage } from '../../shared/qcow2/image/create.ts';
import type { SnapshotRef } from '../../shared/qcow2/image/image.ts';
import { changeKeySlots } from '../../shared/qcow2/crypto/key-slot-change.ts';
import { refusePassphraseTheChainLacksAt } from '../../shared/qcow2/image/chain-passphrase.ts';
import { previewRewrite, rewriteImage, type RewriteResult } from '../../shared/qcow2/rewrite/rewrite.ts';
import { readResizePreview, resizeImagePath } from '../../shared/qcow2/snapshots/resize.ts';
import { openStateFiles } from '../../shared/qcow2/files/state-files.ts';
import { createFilesJobs } from './files-jobs.ts';
import type { ContractJobTable, WorkerSettings } from './protocol.ts';
import { withSecretBytes } from './secret-bytes.ts';
import { waitForGate } from './test-gate.ts';

/** qemu-img's pool holds at most 4 compressing threads per image (QCOW2_MAX_THREADS); each has its own zlib state. */
const MAX_COMPRESSION_THREADS = 4;

export function defaultWorkerSettings(): WorkerSettings {
  return { compressionThreads: Math.min(MAX_COMPRESSION_THREADS, availableParallelism()) };
}

/** Each job kind of the contract and the engine function that does it. */
export function createJobTable(settings: WorkerSettings = defaultWorkerSettings()): ContractJobTable {
  return {
    'image.info': (path) => readImageInfo(path),
    'image.map': (path, args, context) => readAllocationMap(path, { cells: args.cells, ...(args.snapshot === undefined ? {} : { snapshot: snapshotRef({ name: args.snapshot, id: args.snapshotId, date: args.snapshotDate }) }) }, context),
    // The contract has the backing file's format given with it: it is not guessed (contract.ts).
    'image.create': (path, args, context) => {
      createImage({ ...args, path }, context);
      return readImageInfo(path);
    },
    'image.usage': (path, _args, context) => readUsage(path, context),
    'image.diff': (path, args, context) => readDiff(path, snapshotRef({ name: args.from, id: args.fromId, date: args.fromDate }), snapshotRef({ name: args.to, id: args.toId, date: args.toDate }), context),
    'image.check': (path, _args, context) => checkImagePath(path, {}, context),
    'image.repair': (path, args, context) => checkImagePath(path, { repair: args.mode }, context),
    'snapshot.tree': async (path, _args, context) => {
      if (settings.treeGate !== undefined) await waitForGate(settings.treeGate, context);
      return readSnapshotTree(path, context);
    },
    'snapshot.outline': (path) => readSnapshotOutline(path),
    'snapshot.create': (path, args, context) => takeSnapshot(path, args.name, context, args.note),
    'snapshot.apply': (path, args, context) => {
      revertToSnapshot(path, snapshotRef(args), context, args.discardUpTo === undefined ? {} : { discardUpTo: args.discardUpTo });
      return null;
    },
    'snapshot.delete': (path, args, context) => {
      removeSnapshot(path, snapshotRef(args), context);
      return null;
    },
    'snapshot.rename': (path, args) => {
      changeSnapshotName(path, snapshotRef(args), args.newName);
      return null;
    },
    'snapshot.note': (path, args) => {
      changeSnapshotNote(path, snapshotRef(args), args.note);
      return null;
    },
    'image.rewritePreview': (path, args, context) => {
      const encryption = args.output === 'plain' ? { kind: 'none' as const } : args.output === 'luks' ? { kind: 'luks' as const, cipher: args.cipher } : { kind: 'same' as const };
      const preview = previewRewrite({ source: path, compression: args.compression, compressionType: compressionTypeCode(args.compressionType), version: versionFor(args.compat), encryption, dropBitmaps: args.dropBitmaps }, context);
      return {
        fileBytes: preview.fileBytes,
        expectedBytes: preview.expectedBytes,
        maxBytes: preview.maxBytes,
        sampledClusters: preview.sampledClusters,
        freeBytes: preview.freeBytes,
        snapshots: preview.snapshots,
        compressed: preview.compressed,
      };
    },
    'image.compress': (path, args, context) =>
      rewriteSummary(
        rewriteImage(
          {
            source: path,
            compression: 'compress',
            compressionType: compressionTypeCode(args.compressionType),
            version: versionFor(args.compat),
            compressionThreads: settings.compressionThreads,
            compressWorker: settings.compressWorker,
            earlyVerifyWorker: settings.earlyVerifyWorker,
            dropBitmaps: args.dropBitmaps,
          },
          context,
        ),
      ),
    'image.compact': (path, args, context) =>
      withSecretBytes([args.passphrase], ([passphrase]) =>
        rewriteSummary(rewriteImage({ source: path, compression: args.uncompress === true ? 'uncompress' : 'keep', version: versionFor(args.compat), passphrase, earlyVerifyWorker: settings.earlyVerifyWorker, dropBitmaps: args.dropBitmaps }, context)),
      ),
    // An encrypted disk's data is never stored compressed (QEMU would keep those clusters unencrypted): 'keep' leaves that to the engine.
    'image.encrypt': (path, args, context) =>
      withSecretBytes([args.newPassphrase, args.passphrase], ([newPassphrase, passphrase]) =>
        rewriteSummary(
          rewriteImage(
            {
              source: path,
              expectedEncryption: args.from === 'plain' ? 'none' : args.from,
              compression: 'keep',
              passphrase,
              encryption: { kind: 'luks', passphrase: newPassphrase, cipher: args.cipher, hash: args.hash, iterTimeMs: args.iterTimeMs },
              dropBitmaps: args.dropBitmaps,
            },
            context,
          ),
        ),
      ),
    'image.decrypt': (path, args, context) =>
      withSecretBytes([args.passphrase], ([passphrase]) => rewriteSummary(rewriteImage({ source: path, compression: 'keep', passphrase, encryption: { kind: 'none' }, dropBitmaps: args.dropBitmaps }, context))),
    'image.passphrase': (path, args, context) =>
      withSecretBytes([args.passphrase, args.newPassphrase], ([passphrase, newPassphrase]) => {
        if (args.action === 'change' && newPassphrase !== undefined) refusePassphraseTheChainLacksAt(path, newPassphrase, context);
        return changeKeySlots(path, { passphrase, action: args.action, newPassphrase, iterTimeMs: args.iterTimeMs }, context);
      }),
    'image.resizePreview': (path, args, context) => readResizePreview(path, args.size, context),
    'image.resize': (path, args, context) =>
      withSecretBytes([args.passphrase], ([passphrase]) => resizeImagePath(path, args.size, { shrink: args.shrink, discardData: args.discardData, discardUpTo: args.discardBytes }, context, { passphrase })),
    'snapshot.export': (path, args, context) => {
      const result = withSecretBytes([args.passphrase], ([passphrase]) => convertImage({ source: path, target: args.target, targetFormat: args.format, sourceSnapshot: snapshotRef(args), passphrase }, context));
      return { target: args.target, format: args.format, virtualSize: result.virtualSize, fileBytes: statSync(args.target).size };
    },
    'image.rescue': (path, args, context) => {
      const result = withSecretBytes([args.passphrase], ([passphrase]) =>
        convertImage({ source: path, target: args.target, targetFormat: args.format, sourceSnapshot: args.snapshot === undefined ? undefined : snapshotRef({ name: args.snapshot, id: args.snapshotId, date: args.snapshotDate }), passphrase, rescue: true }, context),
      );
      return rescueReport(args.target, args.format, result);
    },
    'chain.read': (path) => readBackingChain(path),
    'chain.commit': (path, args, context) =>
      withSecretBytes([args.passphrase], ([passphrase]) => {
        const result = runSteps(commitSteps({ image: path, keepOverlay: args.keepOverlay === true, expectedBacking: args.backingFile, passphrase }, context));
        // The emptied overlay compacted in place, so its file shrinks as qemu-img's does; the commit is done whatever happens there.
        if (result.worthCompacting) {
          try {
            rewriteImage({ source: path, compression: 'keep', earlyVerifyWorker: settings.earlyVerifyWorker, passphrase }, context);
          } catch {
            // The overlay reads right and only holds free space: `Compact…` gives it back later.
          }
        }
        return { base: result.base, committedBytes: result.committedBytes, grownFrom: result.grownFrom, emptied: result.emptied };
      }),
    'chain.rebase': (path, args, context) =>
      withSecretBytes([args.passphrase], ([passphrase]) => {
        const result = runSteps(rebaseSteps({ image: path, backingFile: args.backingFile ?? null, backingFormat: args.backingFormat, unsafe: args.unsafe === true, passphrase }, context));
        return { comparedBytes: result.comparedBytes, copiedBytes: result.copiedBytes };
      }),
    ...createFilesJobs(openStateFiles),
  };
}

/** The table a worker started without settings uses (tests, a chunk run by hand). */
export const jobTable: ContractJobTable = createJobTable();

/**
 * The snapshot a request names: by its id and name where the app sent both (names may repeat), else
 * by its name; with the creation time the app showed, where it sent one, checked too.
 */
function snapshotRef(args: { name: string; id?: string; date?: string }): SnapshotRef {
  if (args.id === undefined) return args.date === undefined ? args.name : { name: args.name, date: args.date };
  return { id: args.id, name: args.name, ...(args.date === undefined ? {} : { date: args.date }) };
}

function compressionTypeCode(name: 'zlib' | 'zstd' | undefined): CompressionType | undefined {
  return name === undefined ? undefined : name === 'zstd' ? 1 : 0;
}

function rescueReport(target: string, format: 'qcow2' | 'raw', result: ConvertResult): RescueReport {
  const unreadable = result.unreadable ?? [];
  return {
    target,
    format,
    virtualSize: result.virtualSize,
    fileBytes: statSync(target).size,
    unreadableBytes: unreadable.reduce((sum, range) => sum + range.length, 0),
    unreadableRangeCount: unreadable.length,
    unreadable: unreadable.slice(0, MAX_REPORTED_RANGES),
  };
}

/** compat 1.1 asked of a rewrite: version 3 (a version 2 disk is upgraded); otherwise the disk keeps its own. */
function versionFor(compat: '1.1' | undefined): 3 | undefined {
  return compat === '1.1' ? 3 : undefined;
}

/** What the page hears of a rewrite: the in-place target is the job's own path already. */
function rewriteSummary(result: RewriteResult): RewriteSummary {
  return {
    beforeBytes: result.beforeBytes,
    afterBytes: result.afterBytes,
    snapshots: result.snapshots,
    storedClusters: result.storedClusters,
    compressedClusters: result.compressedClusters,
    zeroClusters: result.zeroClusters,
    verified: result.verified,
    encryption: result.encryption,
    upgradedToVersion3: result.upgradedToVersion3,
  };
}
