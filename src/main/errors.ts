import type { WireError } from '../shared/ipc/contract.ts';
import { Qcow2Error, isErrorCode } from '../shared/qcow2/errors.ts';

/** A request main refuses before doing any work: unknown name, arguments that fail the schema. */
export class RequestError extends Error {
  readonly code = 'INVALID_REQUEST';

  constructor(message: string) {
    super(message);
    this.name = 'RequestError';
  }
}

/** Any thrown value as it may cross a thread or process boundary: a code and a message, nothing else. */
export function toWireError(error: unknown): WireError {
  if (error instanceof Qcow2Error || error instanceof RequestError) {
    return { code: error.code, message: error.message };
  }
  const detail = error instanceof Error ? error.message : String(error);
  return { code: 'INTERNAL', message: `Internal error in Cowbell: ${detail}` };
}

/** The inverse for errors that came back from a worker: a typed engine error again. */
export function fromWireError(wire: { code?: unknown; message?: unknown }): Qcow2Error {
  const message = typeof wire.message === 'string' ? wire.message : 'The job failed without a message';
  return new Qcow2Error(isErrorCode(wire.code) ? wire.code : 'INTERNAL', message);
}
