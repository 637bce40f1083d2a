/**
 * Cheap shape checks on what main sends before the renderer draws it: a reply that fails one
 * becomes a BAD_REPLY message instead of a broken view.
 */
import type { AppAbout, ImageInfo, PathCompletion } from '../../../shared/ipc/contract.ts';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isByteCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isOptionalString(value: unknown): boolean {
  return value === undefined || typeof value === 'string';
}

export function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

export function isAppAbout(value: unknown): value is AppAbout {
  return (
    isRecord(value) &&
    typeof value.name === 'string' &&
    typeof value.version === 'string' &&
    (value.mode === 'electron' || value.mode === 'browser') &&
    typeof value.platform === 'string'
  );
}

export function isPathCompletions(value: unknown): value is PathCompletion[] {
  return (
    Array.isArray(value) &&
    value.every((item) => isRecord(item) && typeof item.path === 'string' && (item.kind === 'folder' || item.kind === 'image'))
  );
}

function isSnapshotList(value: unknown): boolean {
  return (
    value === undefined ||
    (Array.isArray(value) &&
      value.every(
        (snapshot) =>
          isRecord(snapshot) &&
          typeof snapshot.id === 'string' &&
          typeof snapshot.name === 'string' &&
          typeof snapshot['date-sec'] === 'number' &&
          typeof snapshot['vm-state-size'] === 'number' &&
          typeof snapshot['vm-clock-sec'] === 'number' &&
          typeof snapshot['vm-clock-nsec'] === 'number',
      ))
  );
}

export function isImageInfo(value: unknown): value is ImageInfo {
  if (!isRecord(value)) return false;
  const specific = value['format-specific'];
  const data = isRecord(specific) ? specific.data : undefined;
  return (
    typeof value.filename === 'string' &&
    isByteCount(value['virtual-size']) &&
    isByteCount(value['actual-size']) &&
    isByteCount(value['cluster-size']) &&
    typeof value['dirty-flag'] === 'boolean' &&
    isOptionalString(value['backing-filename']) &&
    isOptionalString(value['backing-filename-format']) &&
    isOptionalString(value['read-only-reason']) &&
    (value['in-use'] === undefined || typeof value['in-use'] === 'boolean') &&
    isSnapshotList(value.snapshots) &&
    isRecord(data) &&
    (data.compat === '0.10' || data.compat === '1.1') &&
    (data.corrupt === undefined || typeof data.corrupt === 'boolean') &&
    typeof data['compression-type'] === 'string' &&
    typeof data['refcount-bits'] === 'number'
  );
}
