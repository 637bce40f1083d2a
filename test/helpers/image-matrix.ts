/**
 * The qcow2 format matrix the interop tests run over: compat × cluster size × refcount width ×
 * extended L2, with only valid combinations generated (v2 has 16-bit refcounts and no extended
 * L2; extended L2 needs clusters of at least 16 KiB).
 */
import type { CreateOptions } from '../../src/shared/qcow2/image/create.ts';

export interface FormatConfig {
  compat: '0.10' | '1.1';
  clusterSize: number;
  refcountBits: number;
  extendedL2: boolean;
  compressionType: 'zlib' | 'zstd';
}

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const CLUSTER_SIZES = [512, 4 * KiB, 64 * KiB, 2 * MiB];

export function formatMatrix(): FormatConfig[] {
  const configs: FormatConfig[] = [];
  for (const clusterSize of CLUSTER_SIZES) {
    configs.push({ compat: '0.10', clusterSize, refcountBits: 16, extendedL2: false, compressionType: 'zlib' });
    for (const refcountBits of [1, 16, 64]) {
      configs.push({ compat: '1.1', clusterSize, refcountBits, extendedL2: false, compressionType: 'zlib' });
      if (clusterSize >= 16 * KiB) configs.push({ compat: '1.1', clusterSize, refcountBits, extendedL2: true, compressionType: 'zlib' });
    }
  }
  return configs;
}

export function configName(config: FormatConfig): string {
  const cluster = config.clusterSize >= MiB ? `${config.clusterSize / MiB}M` : config.clusterSize >= KiB ? `${config.clusterSize / KiB}K` : `${config.clusterSize}B`;
  const parts = [`v${config.compat === '0.10' ? 2 : 3}`, cluster, `rc${config.refcountBits}`];
  if (config.extendedL2) parts.push('extl2');
  if (config.compressionType === 'zstd') parts.push('zstd');
  return parts.join(' ');
}

/** The `-o` value qemu-img create/convert takes for this configuration. */
export function qemuOptions(config: FormatConfig, extra: string[] = []): string {
  const options = [`compat=${config.compat}`, `cluster_size=${config.clusterSize}`, `refcount_bits=${config.refcountBits}`];
  if (config.extendedL2) options.push('extended_l2=on');
  if (config.compressionType === 'zstd') options.push('compression_type=zstd');
  return [...options, ...extra].join(',');
}

export function cowbellOptions(config: FormatConfig): CreateOptions {
  return {
    compat: config.compat,
    clusterSize: config.clusterSize,
    refcountBits: config.refcountBits,
    extendedL2: config.extendedL2,
    compressionType: config.compressionType,
  };
}

/** A virtual size of a few MiB (a few clusters for 2 MiB clusters) that is not a whole number of clusters. */
export function smallDiskSize(config: FormatConfig): number {
  return Math.max(3 * MiB, 6 * config.clusterSize) + 1536;
}
