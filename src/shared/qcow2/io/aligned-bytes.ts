/**
 * Large I/O buffers whose memory starts on a page boundary.
 *
 * The kernel copies file data to and from a user buffer much more slowly when the buffer starts
 * at certain misalignments: on the AMD EPYC machines Cowbell is tested on, reading page-cached data
 * into a buffer at page + 16 bytes — exactly where malloc places a large block — runs at a quarter
 * of the speed of an aligned one (measured with pread in C and with fs.readSync alike). JavaScript
 * cannot choose where an ArrayBuffer lives, and whether a `new Uint8Array(n)` lands on such an
 * address depends on the allocator's history; a WebAssembly.Memory, though, is always page-aligned.
 * Where WebAssembly is unavailable (node --jitless) or its address space cannot be reserved, these
 * fall back to ordinary buffers: correct, only sometimes slower.
 */
const WASM_PAGE_BYTES = 64 * 1024;

/** The part of WebAssembly used here (the project's type libraries do not declare it). */
interface WasmMemoryConstructor {
  new (descriptor: { initial: number; maximum?: number; shared?: boolean }): { readonly buffer: ArrayBuffer };
}
const WasmMemory = (globalThis as { WebAssembly?: { Memory?: WasmMemoryConstructor } }).WebAssembly?.Memory;

function wasmPages(length: number): number {
  return Math.max(1, Math.ceil(length / WASM_PAGE_BYTES));
}

/** `length` zeroed bytes starting on a page boundary (when the platform allows). */
export function alignedBytes(length: number): Uint8Array {
  try {
    const pages = wasmPages(length);
    if (WasmMemory !== undefined) return new Uint8Array(new WasmMemory({ initial: pages, maximum: pages }).buffer, 0, length);
  } catch {
    // Address space for the memory could not be reserved: an ordinary buffer does.
  }
  return new Uint8Array(length);
}

/** Like alignedBytes, over a SharedArrayBuffer that can be handed to worker threads. */
export function alignedSharedBytes(length: number): Uint8Array {
  try {
    const pages = wasmPages(length);
    // A shared memory's buffer is a SharedArrayBuffer.
    if (WasmMemory !== undefined) return new Uint8Array(new WasmMemory({ initial: pages, maximum: pages, shared: true }).buffer, 0, length);
  } catch {
    // As above.
  }
  return new Uint8Array(new SharedArrayBuffer(length));
}
