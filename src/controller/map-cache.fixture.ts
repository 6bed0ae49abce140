// For the reconcilers' unit tests: an informer cache (reconcile.ts's Cache) over a Map the test fills.

import type { Cache } from './reconcile.ts';

export class MapCache<T> implements Cache<T> {
  m = new Map<string, T>();
  get(k: string): T | undefined {
    return this.m.get(k);
  }
  list(): T[] {
    return [...this.m.values()];
  }
}
