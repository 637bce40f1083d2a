/** How much of a snapshot's note a line of human output shows (`snapshot list`, `info`); --json has it whole. */
const NOTE_PREVIEW_CHARACTERS = 72;

/** A note on one line: line breaks as " / ", control characters as spaces, cut with "…" past the preview's length. */
export function notePreview(note: string): string {
  // eslint-disable-next-line no-control-regex
  const line = note.trim().replace(/\s*\n\s*/g, ' / ').replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
  const characters = [...line];
  return characters.length > NOTE_PREVIEW_CHARACTERS ? `${characters.slice(0, NOTE_PREVIEW_CHARACTERS - 1).join('')}…` : line;
}
