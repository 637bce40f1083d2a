import { UsageError } from './command.ts';

/**
 * qemu-img's -t: whether a new output is flushed to disk before it takes its name. Every mode but
 * unsafe flushes; unsafe does not (a power failure may leave the output incomplete). A disk
 * rewritten in place is always flushed before it replaces the old one.
 */
const CACHE_MODES = ['writeback', 'unsafe', 'none', 'writethrough', 'directsync'];

export function cacheMode(value: string | undefined): boolean {
  if (value === undefined) return true;
  if (!CACHE_MODES.includes(value)) throw new UsageError(`-t must be one of ${CACHE_MODES.join(', ')}, not ${value}`);
  return value !== 'unsafe';
}
