/**
 * The step every fault-injection runner starts with: set the image up, read its guest state, run
 * the operation once on a FaultFile to log its writes and flushes, and read the state after.
 */
import * as fs from 'node:fs';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { CrashState, FaultFile, type FileEvent } from '../../helpers/fault-file.ts';
import { readGuestState, type GuestState } from './guest-state.ts';
import type { ImageOperation } from './harness.ts';

export interface ReferenceRun {
  /** The image's bytes before the operation. */
  initial: Uint8Array;
  /** The image's bytes after the whole operation. */
  final: Uint8Array;
  before: GuestState;
  after: GuestState;
  /** Every write and flush the operation made, in order. */
  log: readonly FileEvent[];
  /** The contract's granule: a cluster, or a subcluster with extended L2. */
  granuleBytes: number;
}

export async function referenceRun(operation: ImageOperation, imagePath: string): Promise<ReferenceRun> {
  await operation.setup(imagePath);
  const initial = new Uint8Array(fs.readFileSync(imagePath));
  const before = readGuestState(new CrashState(imagePath, initial, []), operation.passphrase);
  const fault = new FaultFile(imagePath, initial);
  const image = Qcow2Image.openFile(fault, { ...operation.open, passphrase: operation.passphrase });
  const granuleBytes = image.subclusterBytes;
  operation.run(image);
  image.close();
  const final = fault.contents();
  const after = readGuestState(new CrashState(imagePath, final, []), operation.passphrase);
  return { initial, final, before, after, log: fault.log, granuleBytes };
}
