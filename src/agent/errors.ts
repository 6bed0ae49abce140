// The two ways an agent request or operation ends without a result: an HTTP error answer (status, reason-like
// code, message, optional Retry-After), and an operation that cannot reach a verdict (its Reason goes to the
// controller, which fails the probe with it).

import type { Reason } from '../verdict.ts';

/** Answered as `{ code, message }` with `status` (and `retry-after` when set) by server.ts. */
export class HttpError extends Error {
  override name = 'HttpError';
  readonly status: number;
  readonly code: string;
  readonly retryAfterS: number | undefined;
  constructor(status: number, code: string, message: string, retryAfterS?: number) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

/** The operation cannot reach a verdict, for the reason given (the controller fails the probe with it). */
export class OperationFailed extends Error {
  override name = 'OperationFailed';
  readonly reason: Reason;
  constructor(reason: Reason) {
    super(reason.message);
    this.reason = reason;
  }
}
