/**
 * The test processes (vitest's workers and every tool they start) ask glibc's malloc for
 * transparent huge pages: `glibc.malloc.hugetlb=1` marks its heap and its mmap'd chunks with
 * MADV_HUGEPAGE, so a large buffer faults in 2 MiB at a time instead of 4 KiB.
 *
 * Why: on the CI machines (Firecracker guests under PVM, with free-page reporting) a page fault is
 * dear, and the unit run spent ~40% of its CPU in the kernel, most of it faulting in fresh memory
 * for buffers read from or compared with images. With this set, the crash and rewrite suites ran
 * ~15% faster (two alternating rounds each). It changes nothing a test observes; glibc older than
 * 2.35 and other C libraries ignore the tunable.
 */
const TUNABLE = 'glibc.malloc.hugetlb=1';

/** Adds the tunable to GLIBC_TUNABLES (keeping what is there) before the test processes start. */
export function askMallocForHugePages(env: NodeJS.ProcessEnv = process.env): void {
  const current = env.GLIBC_TUNABLES ?? '';
  if (/(^|:)glibc\.malloc\.hugetlb=/.test(current)) return;
  env.GLIBC_TUNABLES = current === '' ? TUNABLE : `${current}:${TUNABLE}`;
}
