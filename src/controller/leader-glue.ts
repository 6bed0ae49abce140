// Leader election for the controller main, on kube/leader.ts (Lease, 15 s / 10 s / 2 s).

import type { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from '../kube/clock.ts';
import { LeaderElector } from '../kube/leader.ts';
import type { Logger } from '../kube/logger.ts';

export interface LeaderGlueOptions {
  kc: KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  log: Logger;
  clock: Clock;
  onStartedLeading: () => void;
  /** Leadership lost (not our own shutdown): stop acting at once. */
  onStoppedLeading: () => void;
}

export interface LeaderHandle {
  /** Ends the campaign and releases the Lease if held. */
  stop(): Promise<void>;
}

export function startLeaderElection(opts: LeaderGlueOptions): Promise<LeaderHandle> {
  const abort = new AbortController();
  const elector = new LeaderElector({
    kubeConfig: opts.kc,
    namespace: opts.namespace,
    name: opts.name,
    identity: opts.identity,
    clock: opts.clock,
    logger: opts.log,
    onStartedLeading: () => opts.onStartedLeading(),
    onStoppedLeading: (reason) => {
      if (reason === 'lost') opts.onStoppedLeading();
    },
  });
  const running = elector.run(abort.signal).catch((e: unknown) => {
    opts.log.error('leader election failed', { error: (e as Error).message });
    opts.onStoppedLeading();
    return 'lost' as const;
  });
  return Promise.resolve({
    async stop() {
      abort.abort();
      await running;
    },
  });
}
