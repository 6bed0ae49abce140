// Objects the plugin's unit tests render and wait on: a finished readiness of three pods (one migratable,
// one blocked, one skipped) with a ruled-out target, and three MigrationNodes of which one differs.
// Test data: tsconfig.build.json leaves *.fixture.ts out of dist/.

import type { MigrationNode, NodeFactsView } from '../api/migrationnode.ts';
import type { MigrationReadiness } from '../api/readiness.ts';

export function readinessFixture(): MigrationReadiness {
  return {
    apiVersion: 'migprobe.io/v1alpha1',
    kind: 'MigrationReadiness',
    metadata: { name: 'drain-node-a', annotations: { 'migprobe.io/rerun': 'tok-1' } },
    spec: { source: { nodeName: 'node-a' } },
    status: {
      phase: 'Completed',
      runId: 3,
      observedRerun: 'tok-1',
      totals: { pods: 3, migratable: 1, blocked: 1, pending: 0, skipped: 1, probes: 2 },
      reasonCounts: [{ code: 'FileLocks', pods: 1 }],
      targets: [
        { sourceNodeName: 'node-a', nodeName: 'node-b', eligible: true },
        { sourceNodeName: 'node-a', nodeName: 'node-c', eligible: false, reasons: [{ code: 'ArchMismatch', message: 'source amd64, target arm64' }] },
        { sourceNodeName: 'node-d', nodeName: 'node-b', eligible: true },
      ],
      pods: [
        {
          namespace: 'shop',
          name: 'web-7d9f',
          owner: { kind: 'Deployment', name: 'web' },
          migratable: true,
          bestTarget: 'node-b',
          compatibleTargets: ['node-b'],
          targets: [{ nodeName: 'node-b', migratable: true, freezeMilliseconds: 41, probes: ['web-7d9f-to-node-b-x1'] }],
        },
        {
          namespace: 'shop',
          name: 'db-0',
          owner: { kind: 'StatefulSet', name: 'db' },
          migratable: false,
          reasons: [{ code: 'FileLocks', message: 'task 7 holds a POSIX lock', hint: 'set options.fileLocks: true' }],
          targets: [{ nodeName: 'node-b', migratable: false, reasons: [{ code: 'FileLocks', message: 'task 7 holds a POSIX lock' }], probes: ['db-0-to-node-b-x2'] }],
        },
        { namespace: 'kube-system', name: 'proxy-abc', owner: { kind: 'DaemonSet', name: 'proxy' }, skipped: 'DaemonSet pod: it runs on every node' },
      ],
      conditions: [
        { type: 'Drainable', status: 'False', reason: 'PodsBlocked', message: '1 pod has no target', lastTransitionTime: '2025-01-01T00:00:00Z' },
      ],
    },
  };
}

const FACTS: NodeFactsView = {
  arch: 'amd64',
  kernelRelease: '6.1.0-18-amd64',
  criuVersion: '4.2.1',
  criuFeatures: { mem_dirty_track: true, uffd: true },
  memAvailableBytes: 8 * 1024 ** 3,
  cpu: { vendor: 'GenuineIntel', model: 'Xeon', flags: ['fpu', 'sse2'] },
};

export function nodeFixture(name: string, override?: NodeFactsView): MigrationNode {
  return {
    apiVersion: 'migprobe.io/v1alpha1',
    kind: 'MigrationNode',
    metadata: { name },
    ...(override === undefined ? {} : { spec: { factsOverride: override } }),
    status: { observedFacts: FACTS, lastUpdateTime: '2025-01-01T00:00:00Z' },
  };
}

/** node-a and node-b alike; node-c declared arm64. */
export function nodesFixture(): MigrationNode[] {
  return [nodeFixture('node-b'), nodeFixture('node-c', { arch: 'arm64' }), nodeFixture('node-a')];
}
