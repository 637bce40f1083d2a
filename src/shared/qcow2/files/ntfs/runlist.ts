/**
 * Data runs (the mapping pairs of a non-resident attribute): each run is a length in clusters and a
 * signed delta from the previous run's first cluster; a run without a delta is sparse (reads as
 * zeros). Every run must lie inside the volume and the runs must cover exactly the VCNs the
 * attribute header claims.
 */
import { corrupt } from './bytes.ts';

export interface DataRun {
  /** First virtual cluster of the run in its attribute. */
  vcn: number;
  /** First cluster of the run in the volume, or null for a sparse run. */
  lcn: number | null;
  clusters: number;
}

function readLittleEndian(bytes: Uint8Array, position: number, size: number, signed: boolean): bigint {
  let value = 0n;
  for (let index = size - 1; index >= 0; index--) value = (value << 8n) | BigInt(bytes[position + index] ?? 0);
  if (signed && size > 0 && (bytes[position + size - 1] ?? 0) & 0x80) value -= 1n << BigInt(size * 8);
  return value;
}

/**
 * Decodes the runs of one attribute extent covering VCNs firstVcn..lastVcn (inclusive; lastVcn
 * is firstVcn - 1 for an empty attribute). `clusterCount` is the volume's, which bounds every LCN.
 */
export function decodeRunlist(bytes: Uint8Array, firstVcn: number, lastVcn: number, clusterCount: number, what: string): DataRun[] {
  const runs: DataRun[] = [];
  let position = 0;
  let vcn = BigInt(firstVcn);
  let lcn = 0n;
  const end = BigInt(lastVcn) + 1n;
  for (;;) {
    const header = bytes[position];
    if (header === undefined) throw corrupt(`${what}: its data runs have no end marker`);
    if (header === 0) break;
    const lengthSize = header & 0x0f;
    const offsetSize = header >> 4;
    if (lengthSize === 0 || lengthSize > 8 || offsetSize > 8) throw corrupt(`${what}: data run header 0x${header.toString(16)}`);
    if (position + 1 + lengthSize + offsetSize > bytes.length) throw corrupt(`${what}: a data run lies past the attribute's end`);
    const clusters = readLittleEndian(bytes, position + 1, lengthSize, false);
    if (clusters <= 0n || vcn + clusters > end) throw corrupt(`${what}: a data run of ${clusters} clusters overruns the attribute's ${end - BigInt(firstVcn)} clusters`);
    let runLcn: number | null = null;
    if (offsetSize > 0) {
      lcn += readLittleEndian(bytes, position + 1 + lengthSize, offsetSize, true);
      if (lcn < 0n || lcn + clusters > BigInt(clusterCount)) throw corrupt(`${what}: a data run at cluster ${lcn} (+${clusters}) lies outside the volume`);
      runLcn = Number(lcn);
    }
    runs.push({ vcn: Number(vcn), lcn: runLcn, clusters: Number(clusters) });
    vcn += clusters;
    position += 1 + lengthSize + offsetSize;
  }
  if (vcn !== end) throw corrupt(`${what}: its data runs cover ${vcn - BigInt(firstVcn)} clusters, the header claims ${end - BigInt(firstVcn)}`);
  return runs;
}
