/** The parts of a check report (Cowbell's CheckResult or qemu-img check's JSON) that tests compare. */
import type { CheckResult } from '../../src/shared/qcow2/model.ts';
import type { QemuCheckReport } from './qemu.ts';

/** What was found; an absent count is none. */
export function counts(report: { corruptions?: number; leaks?: number; 'check-errors'?: number }): { corruptions: number; leaks: number; errors: number } {
  return { corruptions: report.corruptions ?? 0, leaks: report.leaks ?? 0, errors: report['check-errors'] ?? 0 };
}

/** The numbers qemu-img check prints about a clean image's layout. */
export function layoutNumbers(report: QemuCheckReport | CheckResult): Record<string, number | undefined> {
  return {
    'allocated-clusters': report['allocated-clusters'],
    'total-clusters': report['total-clusters'],
    'fragmented-clusters': report['fragmented-clusters'],
    'compressed-clusters': report['compressed-clusters'],
    'image-end-offset': report['image-end-offset'],
  };
}
