/**
 * What a check found: qemu-img's three counters and its one-line messages. A hostile image can
 * produce a finding per cluster, so only the first MAX_MESSAGES lines are kept.
 */
export const MAX_MESSAGES = 10_000;

export class CheckFindings {
  corruptions = 0;
  leaks = 0;
  /** QEMU counts I/O errors here and goes on; Cowbell's engine throws them, so a finished check has none. */
  checkErrors = 0;
  private readonly lines: string[] = [];
  private omitted = 0;

  note(message: string): void {
    if (this.lines.length < MAX_MESSAGES) this.lines.push(message);
    else this.omitted++;
  }

  /** `count` > 1 where QEMU would meet the same entry once per L1 table that reaches it. */
  corruption(message: string, count = 1): void {
    this.corruptions += count;
    this.note(message);
  }

  leak(message: string): void {
    this.leaks++;
    this.note(message);
  }

  messages(): string[] {
    return this.omitted === 0 ? [...this.lines] : [...this.lines, `(${this.omitted} more messages not shown)`];
  }
}

