/**
 * A disk's backing chain as the app and `cowbell info --backing-chain` show it: each file's
 * format, sizes and own snapshots, read from its header alone (no guest data). A missing,
 * unreadable or looping file ends the chain with a problem naming it, instead of failing.
 */
import * as fs from 'node:fs';
import { Qcow2Error } from '../errors.ts';
import { backingFormat } from '../format/header.ts';
import { MAX_BACKING_CHAIN } from '../format/limits.ts';
import { snapshotVmStateSize } from '../format/snapshot-table.ts';
import { NodeBlockFile } from '../io/block-file.ts';
import { fileIdentity } from '../io/file-identity.ts';
import { backingProtocolProblem, Qcow2Image, resolveBackingPath } from '../image/image.ts';
import { probeFormat } from '../image/image-format.ts';
import type { BackingChain, ChainFile, ChainProblem } from '../model.ts';

/**
 * `stopAt`: a file not to open (one the caller holds for writing, which a reader would wait for):
 * the chain ends at it, listed but not read.
 */
export function readBackingChain(imagePath: string, options: { stopAt?: string } = {}): BackingChain {
  const stopAt = options.stopAt === undefined ? null : fileIdentity(options.stopAt);
  const files: ChainFile[] = [];
  const seen = new Map<string, number>();
  let next: { path: string; name: string; declaredFormat: string | null } | null = { path: imagePath, name: imagePath, declaredFormat: null };
  while (next !== null) {
    const current: { path: string; name: string; declaredFormat: string | null } = next;
    next = null;
    const entry = blankEntry(current.path, current.name, current.declaredFormat);
    files.push(entry);
    const protocol = files.length > 1 ? backingProtocolProblem(current.name) : null;
    if (protocol !== null) {
      entry.problem = { kind: 'unreadable', message: protocol };
      break;
    }
    const resolved = fileIdentity(current.path);
    const earlier = seen.get(resolved);
    if (earlier !== undefined) {
      entry.problem = { kind: 'loop', message: `The backing chain loops: ${current.name} is file ${earlier + 1} of the chain again` };
      break;
    }
    seen.set(resolved, files.length - 1);
    if (resolved === stopAt) break;
    if (files.length > MAX_BACKING_CHAIN) {
      entry.problem = { kind: 'too-long', message: `The backing chain is longer than ${MAX_BACKING_CHAIN} files` };
      break;
    }
    const backing = describeFile(entry);
    if (backing !== null) next = { path: resolveBackingPath(current.path, backing.name), name: backing.name, declaredFormat: backing.format };
  }
  return { files, complete: files.every((file) => file.problem === null) };
}

function blankEntry(filePath: string, name: string, declaredFormat: string | null): ChainFile {
  return { path: filePath, name, format: null, declaredFormat, virtualSize: null, fileSize: null, allocatedBytes: null, encrypted: false, snapshots: [], problem: null };
}

/** Fills `entry` from the file's header; returns the backing file it names, if any. */
function describeFile(entry: ChainFile): { name: string; format: string | null } | null {
  let file: NodeBlockFile;
  try {
    file = NodeBlockFile.open(entry.path, { readOnly: true });
  } catch (error) {
    entry.problem = problemOf(error, entry.name);
    return null;
  }
  try {
    const stats = fs.fstatSync(file.descriptor);
    entry.fileSize = stats.size;
    entry.allocatedBytes = stats.blocks * 512;
    const probed = probeFormat(file);
    // A raw file named as qcow2 (or the reverse) is read as declared, as QEMU does; say so here.
    const format = entry.declaredFormat === 'raw' || entry.declaredFormat === 'qcow2' ? entry.declaredFormat : probed;
    entry.format = format;
    if (format === 'raw') {
      entry.virtualSize = stats.size;
      return null;
    }
    const image = Qcow2Image.openFile(file, { readOnly: true, openBacking: false });
    entry.virtualSize = image.virtualSize;
    entry.encrypted = image.header.cryptMethod !== 0;
    entry.snapshots = image.snapshots.map((snapshot) => ({ id: snapshot.id, name: snapshot.name, 'date-sec': snapshot.dateSec, 'vm-state-size': snapshotVmStateSize(snapshot) }));
    const name = image.header.backingFile;
    return name === null ? null : { name, format: backingFormat(image.header) };
  } catch (error) {
    entry.problem = problemOf(error, entry.name);
    return null;
  } finally {
    file.close();
  }
}

function problemOf(error: unknown, name: string): ChainProblem {
  if (error instanceof Qcow2Error && error.code === 'NOT_FOUND') return { kind: 'missing', message: `The backing file ${name} does not exist` };
  const detail = error instanceof Error ? error.message : String(error);
  return { kind: 'unreadable', message: `${name} cannot be read: ${detail}` };
}
