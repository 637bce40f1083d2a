import {
  changeSnapshotName,
  readDiff,
  readImageInfo,
  readSnapshotTree,
  readUsage,
  removeSnapshot,
  revertToSnapshot,
  takeSnapshot,
} from '../../shared/qcow2/index.ts';
import { readAllocationMap } from '../../shared/qcow2/snapshots/allocation-map.ts';
import { checkImagePath } from '../../shared/qcow2/check/check.ts';
import { createImage } from '../../shared/qcow2/image/create.ts';
import { detectFormat } from '../../shared/qcow2/image/image-format.ts';
import type { ContractJobTable } from './protocol.ts';

/** Each job kind of the contract and the engine function that does it. */
export const jobTable: ContractJobTable = {
  'image.info': (path) => readImageInfo(path),
  'image.map': (path, args, context) => readAllocationMap(path, args, context),
  'image.create': (path, args, context) => {
    const backingFormat = args.backingFile !== undefined ? (args.backingFormat ?? detectFormat(args.backingFile)) : undefined;
    createImage({ ...args, backingFormat, path }, context);
    return readImageInfo(path);
  },
  'image.usage': (path, _args, context) => readUsage(path, context),
  'image.diff': (path, args, context) => readDiff(path, args.from, args.to, context),
  'image.check': (path, _args, context) => checkImagePath(path, {}, context),
  'image.repair': (path, args, context) => checkImagePath(path, { repair: args.mode }, context),
  'snapshot.tree': (path, _args, context) => readSnapshotTree(path, context),
  'snapshot.create': (path, args, context) => takeSnapshot(path, args.name, context),
  'snapshot.apply': (path, args, context) => {
    revertToSnapshot(path, args.name, context);
    return null;
  },
  'snapshot.delete': (path, args, context) => {
    removeSnapshot(path, args.name, context);
    return null;
  },
  'snapshot.rename': (path, args) => {
    changeSnapshotName(path, args.name, args.newName);
    return null;
  },
};
