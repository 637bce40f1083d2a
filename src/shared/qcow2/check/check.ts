/**
 * `qemu-img check` for qcow2, and `--repair leaks|all`: the refcount every host cluster should have
 * (scan.ts), compared with what is stored (compare.ts), the COPIED flags of the active
 * tables (copied.ts); repairs in place (repair.ts) or by rebuilding the refcount structure
 * (rebuild.ts). After a repair the image is opened again and checked again, and that second
 * check is what the result reports, with the numbers fixed, as qemu-img does.
 */
import { compareRefcounts, type Comparison } from './compare.ts';
import { shortenCompressedSpans } from './compressed-span.ts';
import { checkCopiedFlags } from './copied.ts';
import { CheckFindings } from './findings.ts';
import { forgetOldStructure, rebuildObstacle, rebuildRefcountStructure } from './rebuild.ts';
import { adjustRefcounts, repairEntries } from './repair.ts';
import { repairOverwrittenL2Tables } from './overwritten-l2.ts';
import { relocateOverlaps } from './relocate.ts';
import { repairSnapshotTable } from './snapshot-table-repair.ts';
import { separateSharedL1Tables } from './shared-l1.ts';
import { scanReferences, type ReferenceScan } from './scan.ts';
import { readZeroFilled } from '../io/read-zero-filled.ts';
import { Qcow2Error } from '../errors.ts';
import { parseHeader, serializeFixedHeader } from '../format/header.ts';
import { INCOMPAT_CORRUPT, INCOMPAT_DIRTY } from '../format/limits.ts';
import { headerWithoutUnknownAutoclear } from '../format/unknown-autoclear.ts';
import { Qcow2Image, WITHOUT_DATA_FILE_REASON, type OpenImageOptions } from '../image/image.ts';
import { unencryptedData } from '../image/unencrypted-data.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { CheckResult, RepairLoss } from '../model.ts';

export type RepairMode = 'leaks' | 'all';

export interface CheckOptions {
  repair?: RepairMode;
}

interface Analysis {
  scan: ReferenceScan;
  comparison: Comparison;
  findings: CheckFindings;
  /** Corruptions found before the COPIED pass: if none, the refcounts can be trusted once leaks are lowered. */
  refcountCorruptions: number;
}

function analyse(image: Qcow2Image, job: JobContext): Analysis {
  const findings = new CheckFindings();
  const scan = scanReferences(image, findings, job);
  const comparison = compareRefcounts(scan, findings, job);
  const refcountCorruptions = findings.corruptions;
  job.progress('checking COPIED flags', 0, 1, 'steps');
  checkCopiedFlags(image, scan, findings, 'report', (cluster) => scan.stored.get(cluster));
  return { scan, comparison, findings, refcountCorruptions };
}

type OptionalCount = 'image-end-offset' | 'corruptions' | 'leaks' | 'total-clusters' | 'allocated-clusters' | 'fragmented-clusters' | 'compressed-clusters' | 'unencrypted-bytes';

function resultOf(image: Qcow2Image, analysis: Analysis, messages: string[]): CheckResult {
  const { findings, scan, comparison } = analysis;
  const result: CheckResult = { filename: image.file.path, format: 'qcow2', 'check-errors': findings.checkErrors, messages };
  // Like qemu-img's JSON: a count that is zero is left out.
  const optional = (key: OptionalCount, value: number): void => {
    if (value !== 0) result[key] = value;
  };
  optional('image-end-offset', (comparison.highestCluster + 1) * image.clusterBytes);
  optional('corruptions', findings.corruptions);
  optional('leaks', findings.leaks);
  optional('total-clusters', Math.ceil(image.virtualSize / image.clusterBytes));
  optional('allocated-clusters', scan.allocatedClusters);
  optional('fragmented-clusters', scan.fragmentedClusters);
  optional('compressed-clusters', scan.compressedClusters);
  // Not a corruption: QEMU's own way with compressed clusters of an encrypted image, worth hearing of.
  optional('unencrypted-bytes', unencryptedData(image)?.guestBytes ?? 0);
  return result;
}

/**
 * Checks an open image; with `repair`, fixes what it can and checks again. A repaired `image`
 * is left read-only (its in-memory tables are stale): open the file again to use it.
 */
export function checkImage(image: Qcow2Image, options: CheckOptions = {}, job: JobContext = silentJob): CheckResult {
  // Check reads the file: changes still in this image's caches must be there first.
  if (!image.readOnly && image.hasUnflushedChanges()) image.flush();
  if (options.repair === undefined) {
    const analysis = analyse(image, job);
    return resultOf(image, analysis, analysis.findings.messages());
  }
  if (image.file.readOnly || (image.readOnly && !image.repairAccess)) {
    throw new Qcow2Error('READ_ONLY', `${image.file.path} cannot be repaired: ${image.readOnlyReason ?? 'opened read-only'} (open it with allowDirtyForRepair)`);
  }
  const first = analyse(image, job);
  job.throwIfCancelled();
  // From the first write on, a cancel would only lose the report: the repair runs to its end.
  const uncancellable: JobContext = { progress: (...args) => job.progress(...args), throwIfCancelled: () => {} };
  const log = new CheckFindings();
  const losses: RepairLoss[] = [];
  const onFile = parseHeader(readZeroFilled(image.file, 0, image.clusterBytes), image.file.size(), { forCheck: true });
  const cleared = headerWithoutUnknownAutoclear(onFile);
  if (cleared !== null) {
    image.file.write(cleared, 0);
    image.file.flush();
    image.header.autoclearFeatures = onFile.autoclearFeatures;
  }
  const changed = repair(image, first, options.repair, log, losses, uncancellable);
  let final = first;
  if (changed) {
    markStale(image);
    final = analyse(Qcow2Image.openFile(image.file, { openBacking: false, openDataFile: false, allowDirtyForRepair: true, forCheck: true }), uncancellable);
  }
  if (clearDirtyIfConsistent(image, final)) {
    markStale(image);
    const reopened = Qcow2Image.openFile(image.file, { openBacking: false, openDataFile: false });
    const reason = reopened.readOnlyReason;
    if (reopened.readOnly && reason !== 'opened read-only' && reason !== WITHOUT_DATA_FILE_REASON) log.note(`Note: the repaired image still opens read-only: ${reopened.readOnlyReason}`);
  }
  const messages = first.findings.messages().concat(log.messages());
  if (changed) messages.push(...final.findings.messages());
  const result = resultOf(image, final, messages);
  const corruptionsFixed = Math.max(0, first.findings.corruptions - final.findings.corruptions);
  const leaksFixed = Math.max(0, first.findings.leaks - final.findings.leaks);
  if (corruptionsFixed > 0) result['corruptions-fixed'] = corruptionsFixed;
  if (leaksFixed > 0) result['leaks-fixed'] = leaksFixed;
  if (losses.length > 0) result.lost = losses;
  return result;
}

/** After a repair the image object's tables and caches describe the old state. */
function markStale(image: Qcow2Image): void {
  image.l2Cache.clear();
  image.refcounts.cache.clear();
  image.readOnly = true;
  image.readOnlyReason = 'it was repaired; open it again to use it';
}

/** Applies the repairs `mode` allows, in crash-safe order. Returns true if anything was written. */
function repair(image: Qcow2Image, first: Analysis, mode: RepairMode, log: CheckFindings, losses: RepairLoss[], job: JobContext): boolean {
  job.progress('repairing', 0, 1, 'steps');
  let current = image;
  let analysis = first;
  let changed = false;
  // After a step that changed what is referenced (or where refcounts live), count again from the file.
  const countAgain = (): void => {
    changed = true;
    current = Qcow2Image.openFile(image.file, { openBacking: false, openDataFile: false, allowDirtyForRepair: true, forCheck: true });
    analysis = analyse(current, job);
  };
  // Broken metadata goes first, so that what follows counts only references that will stay.
  if (mode === 'all' && analysis.scan.overwrittenL2.length > 0) {
    if (repairOverwrittenL2Tables(current, analysis.scan, log, losses) > 0) countAgain();
  }
  if (mode === 'all' && (analysis.scan.l1TablesToFix.size > 0 || analysis.scan.l2TablesToFix.size > 0)) {
    if (repairEntries(current, analysis.scan, log) > 0) countAgain();
  }
  // The repaired table needs clusters a sound refcount structure can hand out: before a rebuild only if none is due.
  const fixSnapshotTable = (): void => {
    if (mode !== 'all' || analysis.scan.rebuildReasons.length > 0) return;
    if (analysis.scan.snapshotTableToFix && repairSnapshotTable(current, analysis.scan, log, losses)) countAgain();
    if (separateSharedL1Tables(current, analysis.scan, log)) countAgain();
  };
  fixSnapshotTable();
  if (mode === 'leaks' && analysis.scan.snapshotTableToFix) {
    log.note('The snapshot table must be repaired; run the check with --repair all');
    // A dropped entry's clusters look leaked while the table still names them: lowering their
    // refcounts would free a snapshot's L1 table and data under it, for the next write to take.
    if ((current.snapshotTableDamage?.dropped.length ?? 0) > 0) return changed;
  }
  if (analysis.scan.rebuildReasons.length > 0) {
    if (mode === 'leaks') {
      log.note(`The refcount structure must be rebuilt (${analysis.scan.rebuildReasons[0]}); run the check with --repair all`);
      return changed;
    }
    const obstacle = rebuildObstacle(analysis.scan);
    if (obstacle !== null) {
      log.note(`ERROR cannot rebuild the refcount structure: ${obstacle}`);
      return changed;
    }
    const { scan } = analysis;
    forgetOldStructure(current, scan);
    checkCopiedFlags(current, scan, log, 'clear', (cluster) => scan.expected.target(cluster));
    image.file.flush();
    rebuildRefcountStructure(current, scan, log);
    countAgain();
    if (analysis.scan.rebuildReasons.length > 0) {
      log.note(`ERROR the rebuilt refcount structure is still broken (${analysis.scan.rebuildReasons[0]})`);
      return changed;
    }
    fixSnapshotTable();
  }
  // A compressed cluster's descriptor claiming sectors of metadata beyond its data: nothing to move, only to shorten.
  if (mode === 'all' && shortenCompressedSpans(current, analysis.scan, log) > 0) countAgain();
  if (mode === 'all' && relocateOverlaps(current, analysis.scan, log) > 0) {
    countAgain();
    // A table that also held data was left alone above; once the data has moved, its entries can be repaired.
    if (analysis.scan.l1TablesToFix.size > 0 || analysis.scan.l2TablesToFix.size > 0) {
      if (repairEntries(current, analysis.scan, log) > 0) countAgain();
    }
  }

  const { scan } = analysis;
  const target = (cluster: number): number => scan.expected.target(cluster);
  // --repair leaks touches COPIED flags only where the refcounts will be right afterwards (as QEMU).
  const trusted = mode === 'all' || analysis.refcountCorruptions === 0;
  if (trusted && checkCopiedFlags(current, scan, log, 'clear', target) > 0) changed = true;
  image.file.flush();
  if (mode === 'all' && adjustRefcounts(current, scan, 'raise', log) > 0) changed = true;
  if (adjustRefcounts(current, scan, 'lower', log) > 0) changed = true;
  if (trusted && checkCopiedFlags(current, scan, log, 'set', target) > 0) changed = true;
  image.file.flush();
  return changed;
}

/**
 * Once no corruption is left, the dirty and corrupt bits go (v3), as QEMU's repair does; leaks
 * alone do not keep them. Returns true if the header was written.
 */
function clearDirtyIfConsistent(image: Qcow2Image, analysis: Analysis): boolean {
  if (image.version !== 3 || image.file.readOnly) return false;
  if (analysis.findings.corruptions > 0 || analysis.findings.checkErrors > 0) return false;
  const header = parseHeader(readZeroFilled(image.file, 0, image.clusterBytes), image.file.size(), { forCheck: true });
  const bits = INCOMPAT_DIRTY | INCOMPAT_CORRUPT;
  if ((header.incompatibleFeatures & bits) === 0n) return false;
  header.incompatibleFeatures &= ~bits;
  image.file.flush();
  image.file.write(serializeFixedHeader(header), 0);
  image.file.flush();
  return true;
}

/** qemu-img check's exit status: 0 clean, 1 could not check, 2 corruptions remain, 3 only leaks remain. */
export function checkExitCode(result: CheckResult): 0 | 1 | 2 | 3 {
  if (result['check-errors'] > 0) return 1;
  if ((result.corruptions ?? 0) > 0) return 2;
  if ((result.leaks ?? 0) > 0) return 3;
  return 0;
}

/** Opens the image (writable, dirty allowed, when repairing), checks it and closes it. */
export function checkImagePath(filePath: string, options: CheckOptions = {}, job: JobContext = silentJob, openOptions: OpenImageOptions = {}): CheckResult {
  const repairing = options.repair !== undefined;
  const image = Qcow2Image.open(filePath, { ...openOptions, readOnly: !repairing, openBacking: false, allowDirtyForRepair: repairing, forCheck: true });
  try {
    const result = checkImage(image, options, job);
    result.filename = filePath;
    return result;
  } finally {
    image.close();
  }
}
