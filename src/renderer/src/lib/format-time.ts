/** Snapshot times for people: dates in the user's locale, VM clocks as qemu-img prints them. */

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const isoFormat = new Intl.DateTimeFormat('sv-SE', {
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
});

const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const timeInYearFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' });

/**
 * A shorter date where a full one does not fit (the tree's node): this year's without the year
 * ("Dec 6, 12:43 PM"), an older one without the time ("Dec 6, 2025").
 */
export function formatDateShort(epochSeconds: number, now = new Date()): string {
  const date = new Date(epochSeconds * 1000);
  return date.getFullYear() === now.getFullYear() ? timeInYearFormat.format(date) : dayFormat.format(date);
}

/** Seconds since the epoch → e.g. "25 Nov 2025, 15:48". */
export function formatDate(epochSeconds: number): string {
  return dateFormat.format(new Date(epochSeconds * 1000));
}

/** Seconds since the epoch → "2025-11-25 15:48:02" in local time, for tooltips. */
export function formatDateExact(epochSeconds: number): string {
  return isoFormat.format(new Date(epochSeconds * 1000));
}

/** The guest's clock when the snapshot was taken, "HH:MM:SS.mmm" like `qemu-img snapshot -l`. */
export function formatVmClock(seconds: number, nanoseconds = 0): string {
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const secs = seconds % 60;
  const millis = Math.floor(nanoseconds / 1_000_000);
  const pad = (value: number, width = 2): string => String(value).padStart(width, '0');
  return `${pad(hours)}:${pad(minutes)}:${pad(secs)}.${pad(millis, 3)}`;
}
