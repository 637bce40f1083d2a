/** The engine's public API: what workers and the CLI call. */
export { Qcow2Error, toQcow2Error, type ErrorCode } from './errors.ts';
export type { BlockFile } from './block-file.ts';
export { NodeBlockFile } from './block-file.ts';
export type * from './model.ts';
export { readImageInfo, imageInfo } from './info.ts';
export { Qcow2Image } from './image.ts';
export { createImage, type CreateOptions } from './create.ts';
export { checkImage, checkImagePath, checkExitCode, type CheckOptions, type RepairMode } from './check.ts';
export {
  withImage,
  readSnapshotTree,
  readUsage,
  readDiff,
  takeSnapshot,
  revertToSnapshot,
  removeSnapshot,
  changeSnapshotName,
} from './operations.ts';
export { mapImage } from './map.ts';
export { allocationMap, readAllocationMap, type AllocationMapArgs } from './allocation-map.ts';
export { convertImage, type ConvertRequest, type ConvertResult } from './convert.ts';
export { detectFormat, type ImageFormat } from './image-format.ts';
