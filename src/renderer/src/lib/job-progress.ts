/** A running job's progress in words, as the jobs panel and the job dialogs show it. */
import { formatBytes, formatPercent } from '../../../shared/format-units.ts';
import { formatTimeLeft } from './job-rate.ts';
import type { JobRecord } from '../stores/jobs.ts';

/** Engine stages that read better in other words: PBKDF2 over the key slots is "unlocking" to a user. */
const STAGE_WORDS: Readonly<Record<string, string>> = {
  'Trying key slots': 'Unlocking…',
  unlocking: 'Unlocking…',
};

export function stageWords(stage: string): string {
  return Object.hasOwn(STAGE_WORDS, stage) ? (STAGE_WORDS[stage] as string) : stage;
}

/** "copying · 312 MiB of 2.1 GiB · 85 MiB/s · 20 s left", or the stage and a percentage for steps. */
export function progressText(job: JobRecord, options: { stage?: boolean } = {}): string {
  if (job.total <= 0) return stageWords(job.stage) || 'Waiting…';
  const parts = options.stage === false ? [] : [stageWords(job.stage)];
  if (job.unit === 'bytes') {
    parts.push(`${formatBytes(job.done)} of ${formatBytes(job.total)}`);
    if (job.rate !== null) parts.push(`${formatBytes(job.rate)}/s`);
    const left = formatTimeLeft(job.secondsLeft);
    if (left) parts.push(left);
  } else {
    parts.push(formatPercent(job.done / job.total));
  }
  return parts.filter(Boolean).join(' · ');
}

/** A job's progress as a screen reader says a bar's value: a whole percentage, or nothing while the total is unknown. */
export function progressPercent(job: Pick<JobRecord, 'done' | 'total'>): string | undefined {
  return job.total > 0 ? `${Math.floor((100 * Math.min(job.done, job.total)) / job.total)} %` : undefined;
}
