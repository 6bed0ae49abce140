// Authentication between the controller and the agents, and between agents: bearer ServiceAccount tokens bound
// to the audience `migprobe-agent`. The caller gets its token from a projected token file or the TokenRequest
// API; the agent verifies it with TokenReview and accepts only an allow-list of ServiceAccounts.

import { readFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import type { Clock } from '../kube/clock.ts';
import { AGENT_AUDIENCE } from './protocol.ts';

export interface ReviewResult {
  authenticated: boolean;
  username?: string;
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

export type AuthDecision = { ok: true; username: string } | { ok: false; status: 401 | 403; message: string };

/**
 * Verifies bearer tokens with TokenReview against an allow-list of users. Positive and negative answers are
 * cached for a short while (keyed by the token itself, in memory only) so that polling does not hammer the API.
 */
export class Authenticator {
  private readonly cache = new Map<string, { at: number; decision: AuthDecision }>();
  private readonly allowed: Set<string>;
  private readonly review: TokenReviewer;
  private readonly clock: Clock;
  private readonly ttlMs: number;

  constructor(opts: { allowedUsers: string[]; review: TokenReviewer; clock: Clock; cacheTtlMs?: number }) {
    this.allowed = new Set(opts.allowedUsers);
    this.review = opts.review;
    this.clock = opts.clock;
    this.ttlMs = opts.cacheTtlMs ?? 30_000;
  }

  async authenticate(headers: IncomingHttpHeaders): Promise<AuthDecision> {
    const token = bearerToken(headers);
    if (token === undefined) return { ok: false, status: 401, message: 'missing bearer token' };
    const now = this.clock.now();
    const hit = this.cache.get(token);
    if (hit && now - hit.at < this.ttlMs) return hit.decision;
    let decision: AuthDecision;
    try {
      const r = await this.review(token, [AGENT_AUDIENCE]);
      if (!r.authenticated || r.username === undefined) decision = { ok: false, status: 401, message: 'token not authenticated' };
      else if (!this.allowed.has(r.username)) decision = { ok: false, status: 403, message: `user ${r.username} is not allowed to call the agent` };
      else decision = { ok: true, username: r.username };
    } catch {
      // The API server could not be asked: refuse, and do not cache the refusal.
      return { ok: false, status: 401, message: 'token review failed' };
    }
    if (this.cache.size > 1000) this.cache.clear();
    this.cache.set(token, { at: now, decision });
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
