/**
 * XTS's tweak pass on WebAssembly SIMD: XOR each 16-byte block of a run of 512-byte sectors with
 * its tweak, starting from the sector's first tweak and multiplying by α in GF(2^128) from block
 * to block (IEEE 1619 §5.2: the 128-bit value little-endian, shifted left one bit, 0x87 folded into
 * the low byte when bit 127 falls out). Whole XTS runs are 1.2–1.7x faster with it than with the
 * JavaScript pass in xts-passes.ts (Node 24 and 20 here).
 * The module is one function of a dozen instructions, assembled below from its opcodes (WebAssembly
 * core spec §5.4, SIMD opcodes after the 0xfd prefix) so that no binary is shipped.
 */

/** Sectors per call; the module's memory holds their first tweaks, then their data. */
export const SIMD_RUN_SECTORS = 128;
const SECTOR_BYTES = 512;
const TWEAKS_AT = 0;
const DATA_AT = SIMD_RUN_SECTORS * 16;
const MEMORY_PAGES = Math.ceil((DATA_AT + SIMD_RUN_SECTORS * SECTOR_BYTES) / 65536);

export interface XtsSimd {
  /** The module's memory: the first tweaks go at `tweaks`, the sectors at `data`. */
  readonly memory: Uint8Array;
  readonly tweaks: Uint8Array;
  readonly data: Uint8Array;
  /** XORs `sectors` sectors at `data` with their tweaks (the tweaks are left as they were). */
  xorTweaks(sectors: number): void;
}

/** The little of the WebAssembly JS API used here (the project's TypeScript libs carry no DOM types). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}

let loaded: XtsSimd | null | undefined;

/** The module, instantiated once per thread; null where WebAssembly SIMD is unavailable. */
export function xtsSimd(): XtsSimd | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (wasm === undefined) return loaded;
  const bytes = moduleBytes();
  if (!wasm.validate(bytes)) return loaded;
  const instance = new wasm.Instance(new wasm.Module(bytes), {});
  const memory = new Uint8Array((instance.exports.memory as { buffer: ArrayBuffer }).buffer);
  const xorTweaks = instance.exports.xorTweaks as (data: number, tweaks: number, sectors: number) => void;
  loaded = {
    memory,
    tweaks: memory.subarray(TWEAKS_AT, DATA_AT),
    data: memory.subarray(DATA_AT, DATA_AT + SIMD_RUN_SECTORS * SECTOR_BYTES),
    xorTweaks: (sectors) => xorTweaks(DATA_AT, TWEAKS_AT, sectors),
  };
  return loaded;
}

const I32 = 0x7f;
const V128 = 0x7b;
const op = {
  block: 0x02, loop: 0x03, end: 0x0b, br: 0x0c, brIf: 0x0d,
  localGet: 0x20, localSet: 0x21, localTee: 0x22, i32Const: 0x41,
  i32LtU: 0x49, i32GeU: 0x4f, i32Add: 0x6a, i32Shl: 0x74,
};
const simd = { load: 0x00, store: 0x0b, const: 0x0c, shuffle: 0x0d, and: 0x4e, xor: 0x51, i64x2Shl: 0xcb, i64x2ShrS: 0xcc };

function unsignedLeb(value: number): number[] {
  const out: number[] = [];
  do {
    const low = value & 0x7f;
    value >>>= 7;
    out.push(value === 0 ? low : low | 0x80);
  } while (value !== 0);
  return out;
}

function signedLeb(value: number): number[] {
  const out: number[] = [];
  for (;;) {
    const low = value & 0x7f;
    value >>= 7;
    if ((value === 0 && (low & 0x40) === 0) || (value === -1 && (low & 0x40) !== 0)) return [...out, low];
    out.push(low | 0x80);
  }
}

const vector = (items: number[][]): number[] => [...unsignedLeb(items.length), ...items.flat()];
const section = (id: number, content: number[]): number[] => [id, ...unsignedLeb(content.length), ...content];
const name = (text: string): number[] => [...unsignedLeb(text.length), ...Array.from(text, (char) => char.charCodeAt(0))];
const get = (local: number): number[] => [op.localGet, local];
const set = (local: number): number[] => [op.localSet, local];
const i32 = (value: number): number[] => [op.i32Const, ...signedLeb(value)];
const vop = (code: number): number[] => [0xfd, ...unsignedLeb(code)];
/** v128.load/store with 16-byte alignment and no offset. */
const memoryAccess = (code: number): number[] => [...vop(code), 4, 0];

function moduleBytes(): Uint8Array {
  // Parameters: 0 data, 1 tweaks, 2 sectors. Locals: 3 tweak (v128), 4 sector end, 5 run end, 6 sign masks (v128).
  const [data, tweaks, sectors, tweak, sectorEnd, runEnd, signs] = [0, 1, 2, 3, 4, 5, 6];
  const swapHalves = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];
  // Where a half's top bit falls out: 0x87 into the low half (the polynomial), 1 into the high half (the carry).
  const foldIn = [0x87, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
  const body = [
    ...get(data), ...get(sectors), ...i32(9), op.i32Shl, op.i32Add, ...set(runEnd),
    op.block, 0x40,
    op.loop, 0x40,
    ...get(data), ...get(runEnd), op.i32GeU, op.brIf, 1,
    ...get(tweaks), ...memoryAccess(simd.load), ...set(tweak),
    ...get(data), ...i32(SECTOR_BYTES), op.i32Add, ...set(sectorEnd),
    op.loop, 0x40,
    // data[block] ^= tweak
    ...get(data), ...get(data), ...memoryAccess(simd.load), ...get(tweak), ...vop(simd.xor), ...memoryAccess(simd.store),
    // tweak = (tweak << 1 per half) ^ (swapped sign masks & foldIn)
    ...get(tweak), ...i32(1), ...vop(simd.i64x2Shl),
    ...get(tweak), ...i32(63), ...vop(simd.i64x2ShrS), op.localTee, signs, ...get(signs), ...vop(simd.shuffle), ...swapHalves,
    ...vop(simd.const), ...foldIn, ...vop(simd.and), ...vop(simd.xor), ...set(tweak),
    ...get(data), ...i32(16), op.i32Add, op.localTee, data, ...get(sectorEnd), op.i32LtU, op.brIf, 0,
    op.end,
    ...get(tweaks), ...i32(16), op.i32Add, ...set(tweaks),
    op.br, 0,
    op.end,
    op.end,
    op.end,
  ];
  const locals = vector([[1, V128], [2, I32], [1, V128]]);
  const functionBody = [...locals, ...body];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vector([[0x60, ...vector([[I32], [I32], [I32]]), ...vector([])]])),
    ...section(3, vector([[0]])),
    ...section(5, vector([[0x00, ...unsignedLeb(MEMORY_PAGES)]])),
    ...section(7, vector([[...name('memory'), 0x02, 0], [...name('xorTweaks'), 0x00, 0]])),
    ...section(10, vector([[...unsignedLeb(functionBody.length), ...functionBody]])),
  ]);
}
