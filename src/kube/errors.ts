// Kubernetes API errors: one way to read the HTTP status, one policy for what to do about it, and one safe
// message for conditions and events.
//
// Error shapes seen from @kubernetes/client-node:
// - 1.x / 2.x generated APIs throw `ApiException { code, body, headers }`; `body` is the parsed V1Status or
//   the raw response text (a JSON string) depending on the call. Its `.message` embeds the body AND the HTTP
//   response headers: never show it to users (conditions, events) and never log it at info level.
// - `Watch` (2.x) calls `done(err)` with an `Error` carrying `statusCode` for a non-200 answer, a
//   `DOMException` named `TimeoutError` for its client-side inactivity timeout, or a fetch/stream error.
// - 0.x threw `HttpError { statusCode, response: { statusCode }, body }`; still understood here.
// - A watch `ERROR` event carries a V1Status object (`{ kind: 'Status', code: 410, ... }`).
//
// Policy (`errorPolicy`), used by the controller and the informer:
//   404 Not Found        -> done: the object is gone; nothing to reconcile (deletes are level-based).
//   409 Conflict         -> requeue now: we wrote from a stale copy; re-read and try again (first retry 5 ms).
//   410 Gone             -> relist: the resourceVersion is too old; list again, then watch from the new one.
//   429 Too Many Requests-> retry after the server's Retry-After (header or Status details), else backoff.
//   anything else        -> rate-limited backoff.

export type ErrorAction =
  | { action: 'done' }
  | { action: 'requeue' }
  | { action: 'relist' }
  | { action: 'retryAfter'; delayMs: number }
  | { action: 'backoff' };

/** What a V1Status looks like on the wire (only the fields we read). */
export interface StatusBody {
  kind?: string;
  code?: number;
  reason?: string;
  message?: string;
  details?: { retryAfterSeconds?: number };
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null;
}

function asHttpCode(x: unknown): number | undefined {
  const n = typeof x === 'string' && /^\d{3}$/.test(x) ? Number(x) : x;
  return typeof n === 'number' && Number.isInteger(n) && n >= 100 && n <= 599 ? n : undefined;
}

/** The V1Status in an error's body (parsed object or JSON text), or the error itself if it is a Status. */
export function statusBodyOf(err: unknown): StatusBody | undefined {
  if (!isRecord(err)) return undefined;
  if (err.kind === 'Status') return err;
  let body: unknown = err.body ?? (isRecord(err.response) ? err.response.body : undefined);
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body) as unknown;
    } catch {
      return undefined;
    }
  }
  if (isRecord(body) && (body.kind === 'Status' || typeof body.code === 'number' || typeof body.message === 'string')) {
    return body;
  }
  return undefined;
}

/** The HTTP status of a Kubernetes API error, whatever client-node version threw it; undefined if none. */
export function statusOf(err: unknown): number | undefined {
  if (!isRecord(err)) return undefined;
  // ApiException (1.x/2.x) and watch Status objects use `code`; Node system errors use string codes like
  // 'ECONNREFUSED', which asHttpCode rejects.
  return (
    asHttpCode(err.code) ??
    asHttpCode(err.statusCode) ??
    (isRecord(err.response) ? asHttpCode(err.response.statusCode) ?? asHttpCode(err.response.status) : undefined) ??
    asHttpCode(statusBodyOf(err)?.code)
  );
}

export const isNotFound = (err: unknown): boolean => statusOf(err) === 404;
export const isConflict = (err: unknown): boolean => statusOf(err) === 409;
export const isGone = (err: unknown): boolean => statusOf(err) === 410;
export const isTooManyRequests = (err: unknown): boolean => statusOf(err) === 429;
/** client-node 2.x Watch's client-side timeout (no data for its requestTimeoutMs). */
export const isWatchTimeout = (err: unknown): boolean =>
  isRecord(err) && (err.name === 'TimeoutError' || err.name === 'AbortError') && statusOf(err) === undefined;

function header(headers: unknown, name: string): string | undefined {
  if (!isRecord(headers)) return undefined;
  if (typeof (headers as { get?: unknown }).get === 'function') {
    const v = (headers as { get(n: string): unknown }).get(name);
    if (typeof v === 'string') return v;
  }
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === name) return Array.isArray(v) ? String(v[0]) : String(v);
  }
  return undefined;
}

/** For a 429: how long the server asked us to wait (Retry-After header or Status details), in ms. */
export function retryAfterMs(err: unknown, nowMs: number = Date.now()): number | undefined {
  if (!isRecord(err) || statusOf(err) !== 429) return undefined;
  const h = header(err.headers, 'retry-after') ?? (isRecord(err.response) ? header(err.response.headers, 'retry-after') : undefined);
  if (h !== undefined) {
    if (/^\s*\d+\s*$/.test(h)) return Number(h) * 1000;
    const at = Date.parse(h);
    if (!Number.isNaN(at)) return Math.max(0, at - nowMs);
  }
  const s = statusBodyOf(err)?.details?.retryAfterSeconds;
  return typeof s === 'number' && s >= 0 ? s * 1000 : undefined;
}

/** The one policy: see the top of this file. */
export function errorPolicy(err: unknown): ErrorAction {
  switch (statusOf(err)) {
    case 404:
      return { action: 'done' };
    case 409:
      return { action: 'requeue' };
    case 410:
      return { action: 'relist' };
    case 429: {
      const delayMs = retryAfterMs(err);
      return delayMs === undefined ? { action: 'backoff' } : { action: 'retryAfter', delayMs };
    }
    default:
      return { action: 'backoff' };
  }
}

const MAX_MESSAGE = 512;

function clip(s: string): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > MAX_MESSAGE ? `${one.slice(0, MAX_MESSAGE - 1)}…` : one;
}

/**
 * A message safe for a condition, an event or an info log: for API errors only the HTTP status and the
 * Status.message (never headers, never the raw body); for other errors their own message and cause code.
 */
export function safeMessage(err: unknown): string {
  const code = statusOf(err);
  if (code !== undefined) {
    const status = statusBodyOf(err);
    const text = status?.message ?? status?.reason;
    return clip(text !== undefined && text !== '' ? `HTTP ${code}: ${text}` : `HTTP ${code}`);
  }
  if (isRecord(err)) {
    // An ApiException without a usable code: its message carries headers, so say nothing more.
    if (err.constructor?.name === 'ApiException' || 'headers' in err) return 'Kubernetes API error';
    const msg = typeof err.message === 'string' ? err.message.split('\n')[0] ?? '' : '';
    const cause = isRecord(err.cause) && typeof err.cause.code === 'string' ? ` (${err.cause.code})` : '';
    const ownCode = typeof err.code === 'string' && cause === '' ? ` (${err.code})` : '';
    const name = typeof err.name === 'string' && err.name !== 'Error' ? `${err.name}: ` : '';
    return clip(`${name}${msg}${cause}${ownCode}` || 'unknown error');
  }
  return clip(String(err));
}
