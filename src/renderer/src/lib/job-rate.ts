/** Rate and time left for a job that moves bytes, from its progress samples. */

export interface ProgressSample {
  /** Milliseconds, from any monotonic clock. */
  at: number;
  done: number;
}

/** Samples older than this are dropped: the rate follows what the job does now, not at its start. */
const WINDOW_MS = 5000;

export function addSample(samples: ProgressSample[], sample: ProgressSample): ProgressSample[] {
  const kept = samples.filter((earlier) => sample.at - earlier.at <= WINDOW_MS && earlier.done <= sample.done);
  return [...kept, sample];
}

/** Bytes per second over the samples kept, or null until there are two samples at least 200 ms apart. */
export function ratePerSecond(samples: readonly ProgressSample[]): number | null {
  const first = samples[0];
  const last = samples.at(-1);
  if (!first || !last || last.at - first.at < 200) return null;
  return ((last.done - first.done) * 1000) / (last.at - first.at);
}

export function secondsLeft(done: number, total: number, rate: number | null): number | null {
  if (rate === null || rate <= 0 || total <= done) return null;
  return (total - done) / rate;
}

/** `75` → "1 min 15 s left", `8` → "8 s left", `3700` → "1 h 2 min left". */
export function formatTimeLeft(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '';
  const whole = Math.max(1, Math.round(seconds));
  if (whole < 60) return `${whole} s left`;
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes} min ${whole % 60} s left`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min left`;
}
