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
import type { ContractJobTable } from './protocol.ts';

/** Each job kind of the contract and the engine function that does it. */
export const jobTable: ContractJobTable = {
  'image.info': (path) => readImageInfo(path),
  'image.usage': (path, _args, context) => readUsage(path, context),
  'image.diff': (path, args, context) => readDiff(path, args.from, args.to, context),
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
