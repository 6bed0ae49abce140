// Ground truth for a MigrationProbe verdict on the real cluster: a real migration of the same container by
// Kubernetes' own means, independent of migprobe's code.
//   1. the kubelet's checkpoint API on the source node (`POST /checkpoint/{ns}/{pod}/{container}`, through the
//      API server's node proxy): containerd v2 has runc dump the container with CRIU, fully (memory included),
//      into an archive under the kubelet's checkpoints folder; the workload keeps running;
//   2. the archive becomes a checkpoint image (one layer holding the archive's files, the manifest annotated
//      with the container's name, as checkpointctl/buildah make them), imported into the target node's runtime;
//   3. a pod on the target node whose container uses that image: containerd v2 (with
//      enable_experimental_restore_via_create) restores it with CRIU instead of starting it;
//   4. the restored container must be running, and still running a few seconds later.
// The truth is "migratable" when every step works; otherwise the step that failed and its message.

import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run, sleep, waitFor } from '../../testbed/proc.ts';
import { checkpointContainer, type Cluster } from '../../testbed/index.ts';
import { importImageToCluster } from '../../testbed/cluster.ts';
import { buildOciImage } from '../../testbed/image.ts';
import type { Kubectl } from '../../testbed/kube-kit.ts';

/** The annotation containerd's CRI looks for on an image to treat it as a checkpoint (checkpointctl's name). */
export const CHECKPOINT_ANNOTATION = 'org.criu.checkpoint.container.name';

export interface Truth {
  migratable: boolean;
  /** Where the real migration failed: checkpoint, image, restore, or run (the restored copy died). */
  failedAt?: 'checkpoint' | 'image' | 'restore' | 'run';
  message: string;
  /** The kubelet's archive, as the source node names it. */
  archive?: string;
}

export interface TruthDeps {
  cluster: Cluster;
  kubectl: Kubectl;
  cacheDir: string;
}

export interface TruthInput {
  namespace: string;
  pod: string;
  container: string;
  sourceNode: string;
  targetNode: string;
  /** The pod's spec as created (volumes, hostNetwork, other containers), to give the restored pod the same. */
  podSpec: Record<string, unknown>;
}

/** Migrates the container for real (checkpoint on the source, restore on the target) and says whether it worked. */
export async function realMigration(d: TruthDeps, t: TruthInput): Promise<Truth> {
  let archive: string;
  let hostArchive: string;
  try {
    const cp = await checkpointContainer(d.cluster, t.sourceNode, t.namespace, t.pod, t.container);
    archive = cp.path;
    hostArchive = cp.hostPath;
  } catch (e) {
    return { migratable: false, failedAt: 'checkpoint', message: (e as Error).message };
  }
  let ref: string;
  try {
    const tag = randomBytes(6).toString('hex');
    const img = await buildOciImage(join(d.cacheDir, 'checkpoint-images'), {
      repo: `migprobe.test/checkpoint-${t.pod.slice(0, 40)}`,
      tag,
      config: {},
      annotations: { [CHECKPOINT_ANNOTATION]: t.container },
      populate: async (root) => {
        await run('tar', ['-x', '-f', hostArchive, '-C', root, '--no-same-owner'], { timeoutMs: 120_000 });
      },
    });
    ref = await importImageToCluster(d.cluster, img.tarball, img.ref);
  } catch (e) {
    return { migratable: false, failedAt: 'image', message: (e as Error).message, archive };
  }

  const name = `restored-${randomBytes(3).toString('hex')}`;
  const spec = structuredClone(t.podSpec) as { containers: { name: string; image: string; imagePullPolicy?: string }[]; nodeName?: string; nodeSelector?: unknown };
  delete spec.nodeSelector;
  spec.nodeName = t.targetNode;
  for (const c of spec.containers) {
    if (c.name === t.container) {
      c.image = ref;
      c.imagePullPolicy = 'Never';
    }
  }
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: t.namespace, labels: { 'migprobe.test/restored': 'true' } }, spec };
  await d.kubectl(['apply', '-f', '-'], { input: JSON.stringify(pod) });
  try {
    const state = await waitFor(`restored pod ${name} to run or fail`, 120_000, async () => {
      const p = JSON.parse((await d.kubectl(['get', 'pod', '-n', t.namespace, name, '-o', 'json'])).stdout) as {
        status?: { containerStatuses?: { name: string; restartCount: number; state?: { running?: unknown; waiting?: { reason?: string; message?: string }; terminated?: { reason?: string; message?: string; exitCode?: number } } }[] };
      };
      const cs = p.status?.containerStatuses?.find((c) => c.name === t.container);
      if (cs === undefined) return undefined;
      if (cs.state?.running !== undefined) return { ok: true as const, restarts: cs.restartCount };
      const w = cs.state?.waiting;
      if (w?.reason !== undefined && /Error|BackOff|Invalid|ErrImage/.test(w.reason)) return { ok: false as const, why: `${w.reason}: ${w.message ?? ''}` };
      const term = cs.state?.terminated;
      if (term !== undefined) return { ok: false as const, why: `terminated ${term.reason ?? ''} exit ${term.exitCode ?? '?'}: ${term.message ?? ''}` };
      return undefined;
    });
    if (!state.ok) return { migratable: false, failedAt: 'restore', message: state.why, archive };
    // The restored copy must keep running: a restore that "succeeds" and dies at once is no migration.
    await sleep(3000);
    const after = JSON.parse((await d.kubectl(['get', 'pod', '-n', t.namespace, name, '-o', 'json'])).stdout) as {
      status?: { containerStatuses?: { name: string; restartCount: number; state?: { running?: unknown } }[] };
    };
    const cs = after.status?.containerStatuses?.find((c) => c.name === t.container);
    if (cs?.state?.running === undefined || cs.restartCount > 0) {
      return { migratable: false, failedAt: 'run', message: `the restored container did not keep running: ${JSON.stringify(cs)}`, archive };
    }
    return { migratable: true, message: `restored on ${t.targetNode} from ${archive} and still running`, archive };
  } finally {
    await d.kubectl(['delete', 'pod', '-n', t.namespace, name, '--wait=false', '--grace-period=0', '--force'], { allowFail: true });
  }
}
