// Leader election for the controller main. The Lease implementation belongs to src/kube/leader.ts (written
// separately); until it exists, --leader-elect fails loudly instead of running unguarded.

import type { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from '../kube/clock.ts';
import type { Logger } from '../kube/logger.ts';

export interface LeaderGlueOptions {
  kc: KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  log: Logger;
  clock: Clock;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export interface LeaderHandle {
  stop(): Promise<void>;
}

export async function startLeaderElection(opts: LeaderGlueOptions): Promise<LeaderHandle> {
  const path = '../kube/leader.ts';
  let mod: Record<string, unknown>;
  try {
    mod = (await import(path)) as Record<string, unknown>;
  } catch {
    throw new Error('--leader-elect: src/kube/leader.ts is not available in this build');
  }
  opts.log.error('leader election module found but not wired yet', { exports: Object.keys(mod) });
  throw new Error('--leader-elect is not wired yet');
}
