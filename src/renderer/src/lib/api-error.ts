import type { WireError } from '../../../shared/ipc/contract.ts';
import { isErrorCode } from '../../../shared/qcow2/errors-codes.ts';

/** Codes the renderer itself adds to the engine's: the link to main broke, or main's reply made no sense. */
export type ClientErrorCode = 'DISCONNECTED' | 'BAD_REPLY';
export type ApiErrorCode = WireError['code'] | ClientErrorCode;

const CLIENT_CODES: readonly string[] = ['DISCONNECTED', 'BAD_REPLY', 'INVALID_REQUEST'];

/** A failed request as the renderer sees it: a code to map to words, and the engine's message as detail. */
export class ApiError extends Error {
  readonly code: ApiErrorCode;

  constructor(code: ApiErrorCode, message: string) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
  }
}

export function isApiErrorCode(value: unknown): value is ApiErrorCode {
  return isErrorCode(value) || (typeof value === 'string' && CLIENT_CODES.includes(value));
}

/**
 * Whatever a request rejected with (an ApiError, a WireError-shaped object from the preload)
 * becomes an ApiError; a missing or unknown code becomes INTERNAL. Messages are shown, never parsed.
 */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const candidate = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; message?: unknown };
  const message = typeof candidate.message === 'string' ? candidate.message : String(error);
  return new ApiError(isApiErrorCode(candidate.code) ? candidate.code : 'INTERNAL', message);
}
