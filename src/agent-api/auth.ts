// Authentication between the controller and the agents, and between agents: bearer ServiceAccount tokens bound
// to the audience `migprobe-agent`. The caller gets its token from a projected token file or the TokenRequest
// API; the agent verifies it with TokenReview (audience checked in the answer) and accepts only an allow-list
// of ServiceAccounts; answers are cached in a bounded LRU and reviews of new tokens are rate limited.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import type { Clock } from '../kube/clock.ts';
import { TokenBucket } from '../kube/token-bucket.ts';
import { LruCache } from '../kube/lru.ts';
import { AGENT_AUDIENCE } from './protocol.ts';

export interface ReviewResult {
  authenticated: boolean;
  username?: string;
  /** status.audiences: the audiences of the request the token is valid for (empty: only the API server's). */
  audiences?: string[];
}

/** TokenReview, as a port: the real one calls the API server; unit tests pass a function. */
export type TokenReviewer = (token: string, audiences: string[]) => Promise<ReviewResult>;

/** `system:serviceaccount:<ns>:<name>` for a `ns/name` or `ns:name` entry. */
export function serviceAccountUser(entry: string): string {
  const m = /^([a-z0-9-]{1,63})[/:]([a-z0-9.-]{1,253})$/.exec(entry);
  if (!m) throw new Error(`not a ServiceAccount reference (namespace/name): ${entry}`);
  return `system:serviceaccount:${m[1]}:${m[2]}`;
}

export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  const h = headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer ([A-Za-z0-9._~+/=-]{10,8192})$/.exec(h);
  return m?.[1];
}

export type AuthDecision =
  | { ok: true; username: string }
  | { ok: false; status: 401 | 403; message: string }
  /** Too many tokens not seen before: TokenReview is rate limited; the caller retries after `retryAfterS`. */
  | { ok: false; status: 429; message: string; retryAfterS: number };

/** How much TokenReview an agent asks of the API server, and how long it remembers the answers. */
export interface AuthLimits {
  /** Accepted tokens remembered, least recently used evicted first (--token-cache-size); refusals are kept
   * apart in a quarter of that (at least 16), so made-up tokens never push out an accepted caller. */
  cacheEntries: number;
  /** How long an answer is remembered (--token-cache-ttl-seconds); a refusal for a fifth of it. */
  cacheTtlMs: number;
  /** TokenReviews per second for tokens not in the cache (--token-reviews-per-second) ... */
  reviewsPerSecond: number;
  /** ... with bursts of this many (--token-review-burst). */
  reviewBurst: number;
}

export const DEFAULT_AUTH_LIMITS: AuthLimits = { cacheEntries: 4096, cacheTtlMs: 30_000, reviewsPerSecond: 5, reviewBurst: 20 };

/**
 * Verifies bearer tokens with TokenReview (audience `migprobe-agent`, checked in the answer) against an
 * allow-list of users. Answers are cached in a bounded LRU keyed by the token's sha256 (in memory only), so
 * polling does not hammer the API server; concurrent requests with one new token share one review; reviews of
 * new tokens go through a token bucket, so a flood of made-up tokens cannot flood the API server (429).
 */
export class Authenticator {
  /** Accepted callers, and apart from them the refusals, so that made-up tokens never evict an accepted one. */
  private readonly cache: LruCache<string, AuthDecision>;
  private readonly refused: LruCache<string, AuthDecision>;
  private readonly inflight = new Map<string, Promise<AuthDecision>>();
  private readonly bucket: TokenBucket;
  private readonly allowed: Set<string>;
  private readonly review: TokenReviewer;
  private readonly limits: AuthLimits;
  /** TokenReviews asked (for tests and logs). */
  reviews = 0;

  constructor(opts: { allowedUsers: string[]; review: TokenReviewer; clock: Clock; limits?: Partial<AuthLimits> }) {
    this.allowed = new Set(opts.allowedUsers);
    this.review = opts.review;
    this.limits = { ...DEFAULT_AUTH_LIMITS, ...opts.limits };
    this.cache = new LruCache({ maxEntries: this.limits.cacheEntries, clock: opts.clock });
    this.refused = new LruCache({ maxEntries: Math.max(16, Math.ceil(this.limits.cacheEntries / 4)), clock: opts.clock });
    this.bucket = new TokenBucket({ perSecond: this.limits.reviewsPerSecond, burst: this.limits.reviewBurst, clock: opts.clock });
  }

  /** Accepted callers cached right now. */
  get cached(): number {
    return this.cache.size;
  }

  async authenticate(headers: IncomingHttpHeaders): Promise<AuthDecision> {
    const token = bearerToken(headers);
    if (token === undefined) return { ok: false, status: 401, message: 'missing bearer token' };
    const key = createHash('sha256').update(token).digest('hex');
    const hit = this.cache.get(key) ?? this.refused.get(key);
    if (hit !== undefined) return hit;
    const pending = this.inflight.get(key);
    if (pending !== undefined) return await pending;
    const slot = this.bucket.tryTake();
    if (!slot.ok) {
      const retryAfterS = Math.max(1, Math.ceil(slot.retryAfterMs / 1000));
      return { ok: false, status: 429, message: `too many new tokens to review (limit ${this.limits.reviewsPerSecond}/s); retry after ${retryAfterS} s`, retryAfterS };
    }
    const p = this.decide(token, key);
    this.inflight.set(key, p);
    try {
      return await p;
    } finally {
      this.inflight.delete(key);
    }
  }

  private async decide(token: string, key: string): Promise<AuthDecision> {
    let decision: AuthDecision;
    try {
      this.reviews++;
      const r = await this.review(token, [AGENT_AUDIENCE]);
      if (!r.authenticated || r.username === undefined) decision = { ok: false, status: 401, message: 'token not authenticated' };
      // An answer without our audience comes from an API server that ignored it, or is for a token of the API
      // server's own audience: either way not a token meant for the agent.
      else if (!(r.audiences ?? []).includes(AGENT_AUDIENCE)) decision = { ok: false, status: 401, message: `token not valid for the audience ${AGENT_AUDIENCE}` };
      else if (!this.allowed.has(r.username)) decision = { ok: false, status: 403, message: `user ${r.username} is not allowed to call the agent` };
      else decision = { ok: true, username: r.username };
    } catch {
      // The API server could not be asked: refuse, and do not cache the refusal.
      return { ok: false, status: 401, message: 'token review failed' };
    }
    if (decision.ok) this.cache.set(key, decision, this.limits.cacheTtlMs);
    else this.refused.set(key, decision, Math.ceil(this.limits.cacheTtlMs / 5));
    return decision;
  }
}

/** Where a caller's token comes from. */
export interface TokenSource {
  token(): Promise<string>;
}

/** A projected ServiceAccount token file (kubelet rotates it); re-read at most every `rereadMs`. */
export function fileTokenSource(path: string, clock: Clock, rereadMs = 60_000): TokenSource {
  let cached: { at: number; token: string } | undefined;
  return {
    async token() {
      const now = clock.now();
      if (cached && now - cached.at < rereadMs) return cached.token;
      const t = (await readFile(path, 'utf8')).trim();
      cached = { at: now, token: t };
      return t;
    },
  };
}

/** TokenRequest for a ServiceAccount, as a port: returns the token and its expiry (ms since epoch). */
export type TokenRequester = (audiences: string[], expirationSeconds: number) => Promise<{ token: string; expiresAtMs: number }>;

/** Tokens from the TokenRequest API, renewed when 80% of their lifetime has passed. */
export function requestedTokenSource(request: TokenRequester, clock: Clock, expirationSeconds = 3600): TokenSource {
  let cached: { token: string; renewAt: number } | undefined;
  let inflight: Promise<string> | undefined;
  return {
    async token() {
      const now = clock.now();
      if (cached && now < cached.renewAt) return cached.token;
      inflight ??= (async () => {
        try {
          const r = await request([AGENT_AUDIENCE], expirationSeconds);
          const life = Math.max(0, r.expiresAtMs - now);
          cached = { token: r.token, renewAt: now + life * 0.8 };
          return r.token;
        } finally {
          inflight = undefined;
        }
      })();
      return inflight;
    },
  };
}
