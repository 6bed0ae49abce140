// The agent's MigrationNode calls on the API server, with its own credentials (thin I/O over kube/client.ts):
// GET its Node (the UID for the owner reference, the runtime it reports), GET and create the MigrationNode,
// server-side apply of its status. RBAC (charts/migprobe/templates/agent-rbac.yaml): get nodes; get, create
// migrationnodes; get, patch migrationnodes/status. Nothing that writes spec.

import type { KubeConfig } from '@kubernetes/client-node';
import { GROUP, VERSION } from '../api/v1alpha1.ts';
import { MIGRATION_NODE_KIND, MIGRATION_NODE_PLURAL, type MigrationNode } from '../api/migrationnode.ts';
import { applyStatus, kubeRequest, resourcePath, type ResourceRef } from '../kube/client.ts';
import { isNotFound } from '../kube/errors.ts';
import type { MigrationNodeApi } from './nodefacts-publisher.ts';
import { FIELD_MANAGER } from './nodefacts.ts';

const TIMEOUT_MS = 10_000;

function ref(name?: string): ResourceRef {
  return { group: GROUP, version: VERSION, plural: MIGRATION_NODE_PLURAL, ...(name !== undefined ? { name } : {}) };
}

async function orUndefined<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

export function kubeMigrationNodeApi(kc: KubeConfig): MigrationNodeApi {
  const sig = (signal?: AbortSignal): { signal?: AbortSignal } => (signal ? { signal } : {});
  return {
    node: async (name, signal) => {
      const n = await orUndefined(
        kubeRequest<{ metadata?: { uid?: string }; status?: { nodeInfo?: { containerRuntimeVersion?: string } } }>(kc, {
          method: 'GET',
          path: resourcePath({ group: '', version: 'v1', plural: 'nodes', name }),
          timeoutMs: TIMEOUT_MS,
          ...sig(signal),
        }),
      );
      if (n === undefined || (n.metadata?.uid ?? '') === '') return undefined;
      const runtime = n.status?.nodeInfo?.containerRuntimeVersion;
      return { uid: n.metadata?.uid ?? '', ...(runtime !== undefined && runtime !== '' ? { containerRuntime: runtime } : {}) };
    },
    get: async (name, signal) =>
      await orUndefined(kubeRequest<MigrationNode>(kc, { method: 'GET', path: resourcePath(ref(name)), timeoutMs: TIMEOUT_MS, ...sig(signal) })),
    create: async (obj, signal) =>
      await kubeRequest<MigrationNode>(kc, {
        method: 'POST',
        path: resourcePath(ref()),
        query: { fieldManager: FIELD_MANAGER },
        body: obj,
        timeoutMs: TIMEOUT_MS,
        ...sig(signal),
      }),
    applyStatus: async (name, status, signal) =>
      await applyStatus<MigrationNode>(kc, { ...ref(name), kind: MIGRATION_NODE_KIND }, status as Record<string, unknown>, {
        fieldManager: FIELD_MANAGER,
        force: true,
        ...sig(signal),
      }),
  };
}
