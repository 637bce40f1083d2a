/** Anything guest bytes can be read from: a qcow2 image (any L1), a raw file, a backing chain. */
export interface GuestReader {
  readonly virtualSize: number;
  /** Fills buffer with guest bytes from guestOffset; bytes past virtualSize read as zeros. */
  readInto(buffer: Uint8Array, guestOffset: number): void;
  close(): void;
}
