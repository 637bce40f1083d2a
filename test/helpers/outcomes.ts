/** Checks the property tests share: bytes that must be the same, and an engine call that may be refused. */
import { expect } from 'vitest';
import { Qcow2Error } from '../../src/shared/qcow2/errors.ts';
import { firstDifference } from './qemu.ts';

/** The same bytes: the same length, and no byte differing (the first that does is named). */
export function expectSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  expect(firstDifference(actual, expected), `${what}: first differing byte`).toBe(-1);
}

/** Runs an engine operation: null when it was done, else its refusal (a Qcow2Error other than INTERNAL, which is thrown on). */
export function refusalOf(work: () => unknown): Qcow2Error | null {
  try {
    work();
    return null;
  } catch (error) {
    if (error instanceof Qcow2Error && error.code !== 'INTERNAL') return error;
    throw error;
  }
}

/** The Qcow2Error an engine operation must throw (anything else thrown goes on; finishing fails the test). */
export function thrownQcow2Error(work: () => unknown): Qcow2Error {
  try {
    work();
  } catch (error) {
    if (error instanceof Qcow2Error) return error;
    throw error;
  }
  throw new Error('expected a Qcow2Error');
}
