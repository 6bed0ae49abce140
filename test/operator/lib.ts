// Helpers for the operator end-to-end tests.

import { readFileSync } from 'node:fs';
import * as k8s from '@kubernetes/client-node';
import YAML from 'yaml';
import { kube, runContainer, type RunningContainer } from '../../testbed/index.ts';
import type { MigrationProbe } from '../../src/api/v1alpha1.ts';
import { threadStates } from '../../src/engine/proc-task.ts';
import { REPO, type Operator } from './harness.ts';

export async function getProbe(op: Operator, name: string): Promise<MigrationProbe | undefined> {
  const api = op.kc.makeApiClient(k8s.CustomObjectsApi);
  try {
    return (await api.getNamespacedCustomObject({ group: 'migprobe.io', version: 'v1alpha1', namespace: op.namespace, plural: 'migrationprobes', name })) as MigrationProbe;
  } catch (e) {
    if ((e as { code?: number }).code === 404) return undefined;
    throw e;
  }
}

export async function listProbes(op: Operator): Promise<MigrationProbe[]> {
  const api = op.kc.makeApiClient(k8s.CustomObjectsApi);
  const r = (await api.listNamespacedCustomObject({ group: 'migprobe.io', version: 'v1alpha1', namespace: op.namespace, plural: 'migrationprobes' })) as { items: MigrationProbe[] };
  return r.items;
}

export async function createProbe(op: Operator, name: string, spec: MigrationProbe['spec']): Promise<MigrationProbe> {
  const api = op.kc.makeApiClient(k8s.CustomObjectsApi);
  return (await api.createNamespacedCustomObject({
    group: 'migprobe.io',
    version: 'v1alpha1',
    namespace: op.namespace,
    plural: 'migrationprobes',
    body: { apiVersion: 'migprobe.io/v1alpha1', kind: 'MigrationProbe', metadata: { name, namespace: op.namespace }, spec },
  })) as MigrationProbe;
}

export async function waitProbe(op: Operator, name: string, pred: (p: MigrationProbe) => boolean, timeoutMs = 90_000): Promise<MigrationProbe> {
  const end = Date.now() + timeoutMs;
  let last: MigrationProbe | undefined;
  for (;;) {
    last = await getProbe(op, name);
    if (last && pred(last)) return last;
    if (Date.now() > end) {
      throw new Error(`probe ${name} did not reach the expected state in ${timeoutMs} ms; last status: ${JSON.stringify(last?.status)}\ncontroller log tail:\n${op.controller.log().slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

export const isFinal = (p: MigrationProbe): boolean => p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';

/** A real container from the test image, and a Running Pod object for it on `node`. */
export async function workloadPod(op: Operator, podName: string, node: string, args: string[]): Promise<RunningContainer> {
  const c = await runContainer({ args });
  try {
    await kube.createRunningPod(op.kc, { namespace: op.namespace, name: podName, nodeName: node, containerName: 'app', containerId: c.id, image: c.image });
  } catch (e) {
    await c.remove();
    throw e;
  }
  return c;
}

/** An example file with its targetNodeName replaced, as YAML text for `kubectl apply -f -`. */
export function exampleFor(file: string, targetNodeName: string): { name: string; yaml: string } {
  const doc = YAML.parse(readFileSync(`${REPO}/examples/${file}`, 'utf8')) as MigrationProbe;
  doc.spec.targetNodeName = targetNodeName;
  return { name: doc.metadata.name ?? '', yaml: YAML.stringify(doc) };
}

/** The task state letters of every thread of `pid` (T = stopped, D = uninterruptible...; 'gone' once it exited). */
export function taskStates(pid: number): string[] {
  return threadStates([pid]);
}

export function freezerState(containerId: string): string | undefined {
  for (const p of [`/sys/fs/cgroup/freezer/k8s.io/${containerId}/freezer.state`]) {
    try {
      return readFileSync(p, 'utf8').trim();
    } catch {
      // not there
    }
  }
  return undefined;
}
