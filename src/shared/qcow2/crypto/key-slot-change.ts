/**
 * Changing the passphrases of a LUKS-encrypted image in place: the master key and the data stay,
 * only key slots change (as `qemu-img amend` does). A change is an add then an erase, each written
 * in an order a crash cannot spoil (luks-keys.ts): new key material is durable before the header
 * that activates it, and an old slot is disabled in the header before its material is destroyed.
 * So at every moment the old passphrase, the new one, or both open the image.
 */
import { Qcow2Error } from '../errors.ts';
import { parseCryptoHeaderExtension, type CryptoHeaderExtension } from '../format/crypto-header-extension.ts';
import { clusterSize, EXT_CRYPTO_HEADER, findExtension, parseHeader } from '../format/header.ts';
import { LUKS_PHDR_BYTES, parseLuksHeader, type LuksHeader } from '../format/luks-header.ts';
import { headerWithoutUnknownAutoclear } from '../format/unknown-autoclear.ts';
import { NodeBlockFile, type BlockFile } from '../io/block-file.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import { applyLuksAreaWrites, luksAreaReader } from './luks-area.ts';
import { addLuksKeySlot, eraseLuksKeySlot, luksSlotsOpenedBy, unlockLuks, type KeySlotIterations, type LuksKeySlotChange, type Passphrase } from './luks-keys.ts';

export interface KeySlotRequest extends Omit<KeySlotIterations, 'job'> {
  /** A passphrase the image opens with now. */
  passphrase: Passphrase;
  /**
   * 'change': the new passphrase replaces every slot the old one opens; 'add': a slot for the new
   * passphrase beside the others; 'remove': erase `slot`, or every slot `passphrase` opens.
   */
  action: 'change' | 'add' | 'remove';
  newPassphrase?: Passphrase;
  slot?: number;
}

export interface KeySlotResult {
  /** The active slots afterwards. */
  activeSlots: number[];
  added: number | null;
  removed: number[];
}

export function changeKeySlots(imagePath: string, request: KeySlotRequest, job: JobContext = silentJob, openFile: (filePath: string) => BlockFile = (filePath) => NodeBlockFile.open(filePath)): KeySlotResult {
  const file = openFile(imagePath);
  try {
    return changeKeySlotsOf(file, request, job);
  } finally {
    file.close();
  }
}

export function changeKeySlotsOf(file: BlockFile, request: KeySlotRequest, job: JobContext = silentJob): KeySlotResult {
  if ((request.action === 'change' || request.action === 'add') && request.newPassphrase === undefined) {
    throw new Qcow2Error('INVALID_ARGUMENT', 'A new passphrase is needed');
  }
  const area = luksAreaOf(file);
  const readArea = luksAreaReader(file, area);
  let header = parseLuksHeader(readArea(0, LUKS_PHDR_BYTES), area.length);
  job.progress('unlocking', 0, 3, 'steps');
  const { masterKey } = unlockLuks(header, readArea, request.passphrase, job);
  try {
    // Everything that can be refused is refused before the first write.
    const toErase = request.action === 'add' ? [] : request.slot !== undefined ? [request.slot] : luksSlotsOpenedBy(header, readArea, request.passphrase, job);
    if (request.action === 'remove' && activeSlots(header).filter((slot) => !toErase.includes(slot)).length === 0) {
      throw new Qcow2Error('INVALID_ARGUMENT', 'That would erase the last key slot and lock the disk for good; add another passphrase first');
    }
    for (const slot of toErase) {
      if (header.keySlots[slot]?.active !== true) throw new Qcow2Error('INVALID_ARGUMENT', `Key slot ${slot} is not in use`);
    }
    // The passphrase just opened a slot: a change or removal that erased none would leave it working.
    if (request.action !== 'add' && toErase.length === 0) throw new Qcow2Error('INTERNAL', 'The passphrase opened the disk but no key slot holds it; nothing was changed');
    // The new slot is made (and its refusals — no free slot, a passphrase QEMU could not take —
    // come) before anything is written, the header's unknown autoclear bits included.
    let addition: LuksKeySlotChange | null = null;
    if (request.newPassphrase !== undefined && request.action !== 'remove') {
      job.progress('adding the new passphrase', 1, 3, 'steps');
      addition = addLuksKeySlot(header, masterKey, request.newPassphrase, { iterations: request.iterations, iterTimeMs: request.iterTimeMs, job });
    }
    const cleared = headerWithoutUnknownAutoclear(parseHeader(readHeaderBytes(file), file.size()));
    if (cleared !== null) {
      file.write(cleared, 0);
      file.flush();
    }
    let added: number | null = null;
    if (addition !== null) {
      applyLuksAreaWrites(file, area, addition.writes);
      header = addition.header;
      added = addition.slot;
    }
    job.progress('erasing the old passphrase', 2, 3, 'steps');
    for (const slot of toErase) {
      const change = eraseLuksKeySlot(header, slot);
      applyLuksAreaWrites(file, area, change.writes);
      header = change.header;
    }
    job.progress('done', 3, 3, 'steps');
    return { activeSlots: activeSlots(header), added, removed: toErase };
  } finally {
    masterKey.fill(0);
  }
}

/** The header cluster at its largest (2 MiB), or the whole file if shorter. */
function readHeaderBytes(file: BlockFile): Uint8Array {
  const first = new Uint8Array(Math.min(file.size(), 2 * 1024 * 1024));
  file.read(first, 0);
  return first;
}

function luksAreaOf(file: BlockFile): CryptoHeaderExtension {
  const size = file.size();
  const first = readHeaderBytes(file);
  const header = parseHeader(first, size);
  if (header.cryptMethod !== 2) {
    throw new Qcow2Error('INVALID_ARGUMENT', header.cryptMethod === 1 ? 'This disk uses the old qcow2 AES encryption, which has no key slots: encrypt it afresh (LUKS) to manage passphrases' : 'This disk is not encrypted');
  }
  const extension = findExtension(header, EXT_CRYPTO_HEADER);
  if (extension === undefined) throw new Qcow2Error('CORRUPT', 'The image is LUKS-encrypted but has no encryption header extension');
  return parseCryptoHeaderExtension(extension.data, clusterSize(header));
}

function activeSlots(header: LuksHeader): number[] {
  return header.keySlots.flatMap((slot, index) => (slot.active ? [index] : []));
}
