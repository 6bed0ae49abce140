// A bounded cache with least-recently-used eviction and a per-entry expiry on an injected clock. Pure apart from
// the clock. The agent's token cache (auth.ts): a flood of new tokens evicts the oldest entries one by one
// instead of dropping every cached answer at once.

import type { Clock } from './clock.ts';

export class LruCache<K, V> {
  private readonly entries = new Map<K, { value: V; expiresAt: number }>();
  private readonly max: number;
  private readonly clock: Pick<Clock, 'now'>;
  /** Entries pushed out to make room (not counting expiries). */
  evictions = 0;

  constructor(opts: { maxEntries: number; clock: Pick<Clock, 'now'> }) {
    if (!Number.isInteger(opts.maxEntries) || opts.maxEntries < 1) throw new Error(`an LRU cache needs at least 1 entry (got ${opts.maxEntries})`);
    this.max = opts.maxEntries;
    this.clock = opts.clock;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The value, when present and not expired; marks it most recently used. */
  get(key: K): V | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    this.entries.delete(key);
    if (e.expiresAt <= this.clock.now()) return undefined;
    this.entries.set(key, e); // Map keeps insertion order: the first key is the least recently used
    return e.value;
  }

  /** Stores `value` for `ttlMs`, evicting the least recently used entries beyond the bound. */
  set(key: K, value: V, ttlMs: number): void {
    this.entries.delete(key);
    this.entries.set(key, { value, expiresAt: this.clock.now() + ttlMs });
    while (this.entries.size > this.max) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
      this.evictions++;
    }
  }

  has(key: K): boolean {
    const e = this.entries.get(key);
    return e !== undefined && e.expiresAt > this.clock.now();
  }
}
