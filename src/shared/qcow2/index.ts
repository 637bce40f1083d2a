/** The engine's public API: what workers and the CLI call. */
export { Qcow2Error, toQcow2Error, type ErrorCode } from './errors.ts';
export type { BlockFile } from './io/block-file.ts';
export { NodeBlockFile } from './io/block-file.ts';
export type * from './model.ts';
export { readImageInfo, imageInfo } from './image/info.ts';
export { Qcow2Image } from './image/image.ts';
export { createImage, type CreateOptions } from './image/create.ts';
export { checkImage, checkImagePath, checkExitCode, type CheckOptions, type RepairMode } from './check/check.ts';
export {
  withImage,
  readSnapshotTree,
  readUsage,
  readDiff,
  takeSnapshot,
  revertToSnapshot,
  removeSnapshot,
  changeSnapshotName,
  changeSnapshotNote,
} from './snapshots/operations.ts';
export { MAX_SNAPSHOT_NOTE_BYTES } from './model.ts';
export { mapImage } from './image/map.ts';
export { allocationMap, readAllocationMap, type AllocationMapArgs } from './snapshots/allocation-map.ts';
export { convertImage, type ConvertRequest, type ConvertResult } from './convert/convert.ts';
export { detectFormat, type ImageFormat } from './image/image-format.ts';
export { readBackingChain } from './chain/chain.ts';
export { commitSteps, type CommitRequest, type CommitResult } from './chain/commit.ts';
export { rebaseSteps, type RebaseRequest, type RebaseResult } from './chain/rebase.ts';
export { openStateFiles, stateFilesOf, CURRENT_STATE, type StateFiles } from './files/state-files.ts';
export { copyOut, type CopyOutOptions, type CopyOutResult } from './files/copy-out.ts';
