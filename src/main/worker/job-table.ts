import { readImageInfo } from '../../shared/qcow2/index.ts';
import type { ContractJobTable } from './protocol.ts';

/** Each job kind of the contract and the engine function that does it. */
export const jobTable: ContractJobTable = {
  'image.info': (path) => readImageInfo(path),
};
