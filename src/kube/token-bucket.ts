// A token bucket on an injected clock: `burst` tokens, refilled at `perSecond`. `tryTake` takes a token only
// when one is there (a refusal says how long until the next one); `reserve` always takes one, possibly in the
// future, and says how long to wait for it (the work queue's global limiter). Pure apart from the clock.

import type { Clock } from './clock.ts';

export class TokenBucket {
  private readonly perSecond: number;
  private readonly burst: number;
  private readonly clock: Pick<Clock, 'now'>;
  private tokens: number;
  private last: number;

  constructor(opts: { perSecond: number; burst: number; clock: Pick<Clock, 'now'> }) {
    if (!(opts.perSecond > 0) || !(opts.burst >= 1)) throw new Error(`a token bucket needs perSecond > 0 and burst >= 1 (got ${opts.perSecond}, ${opts.burst})`);
    this.perSecond = opts.perSecond;
    this.burst = opts.burst;
    this.clock = opts.clock;
    this.tokens = opts.burst;
    this.last = opts.clock.now();
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + (Math.max(0, now - this.last) / 1000) * this.perSecond);
    this.last = now;
  }

  /** Takes a token if one is available now; otherwise takes nothing and says when one will be (ms). */
  tryTake(): { ok: true } | { ok: false; retryAfterMs: number } {
    this.refill();
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: Math.ceil(((1 - this.tokens) / this.perSecond) * 1000) };
  }

  /** Takes a token, possibly one not refilled yet; returns how long until it is (ms, 0 when now). */
  reserve(): number {
    this.refill();
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.perSecond) * 1000);
  }
}
