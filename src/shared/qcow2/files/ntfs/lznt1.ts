/**
 * LZNT1, the compression of NTFS compressed files: a compression unit's stored bytes are chunks,
 * each a 16-bit header (bit 15: compressed; low 12 bits: the chunk's stored length minus 3) then
 * either 4096 raw bytes or groups of a flag byte and eight tokens (a literal byte, or a 16-bit
 * back-reference whose split between offset and length bits depends on how far into the
 * chunk's output it is). A header of 0 ends the unit early. Every reference is checked against
 * what the chunk has produced, so hostile bytes cannot read before the chunk or write past the unit.
 */
import { corrupt } from './bytes.ts';

const CHUNK_OUTPUT = 4096;

/** Decompresses `input` into `output` (one compression unit); returns the bytes produced (the rest is zeros). */
export function decompressLznt1(input: Uint8Array, output: Uint8Array, what: string): number {
  let inputPosition = 0;
  let outputPosition = 0;
  while (inputPosition + 2 <= input.length && outputPosition < output.length) {
    const header = (input[inputPosition] ?? 0) | ((input[inputPosition + 1] ?? 0) << 8);
    if (header === 0) break;
    const chunkEnd = inputPosition + (header & 0x0fff) + 3;
    if (chunkEnd > input.length) throw corrupt(`${what}: a compressed chunk runs past its compression unit`);
    const chunkStart = outputPosition;
    const chunkLimit = Math.min(output.length, chunkStart + CHUNK_OUTPUT);
    let position = inputPosition + 2;
    if ((header & 0x8000) === 0) {
      const length = Math.min(chunkEnd - position, chunkLimit - outputPosition);
      output.set(input.subarray(position, position + length), outputPosition);
      outputPosition += length;
    } else {
      while (position < chunkEnd && outputPosition < chunkLimit) {
        const flags = input[position++] ?? 0;
        for (let bit = 0; bit < 8 && position < chunkEnd && outputPosition < chunkLimit; bit++) {
          if ((flags & (1 << bit)) === 0) {
            output[outputPosition++] = input[position++] ?? 0;
            continue;
          }
          if (position + 2 > chunkEnd) throw corrupt(`${what}: a back-reference cut by its chunk's end`);
          const token = (input[position] ?? 0) | ((input[position + 1] ?? 0) << 8);
          position += 2;
          // The further into the chunk, the more bits the offset takes (4 at first, up to 12).
          let offsetShift = 12;
          for (let produced = outputPosition - chunkStart - 1; produced >= 0x10; produced >>= 1) offsetShift--;
          const distance = (token >> offsetShift) + 1;
          const length = (token & ((1 << offsetShift) - 1)) + 3;
          if (distance > outputPosition - chunkStart) throw corrupt(`${what}: a back-reference before its chunk's start`);
          if (outputPosition + length > chunkLimit) throw corrupt(`${what}: a back-reference past its chunk's 4096 bytes`);
          // Byte by byte: a reference may overlap what it is producing (a run).
          for (let index = 0; index < length; index++, outputPosition++) output[outputPosition] = output[outputPosition - distance] ?? 0;
        }
      }
    }
    // A chunk stands for 4096 bytes of output: a short one is followed by zeros.
    output.fill(0, outputPosition, chunkLimit);
    outputPosition = chunkLimit;
    inputPosition = chunkEnd;
  }
  output.fill(0, outputPosition);
  return outputPosition;
}
