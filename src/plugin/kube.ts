// The plugin's API client: the kubeconfig as kubectl resolves it (--kubeconfig, $KUBECONFIG, ~/.kube/config;
// --context) and the few requests `kubectl migprobe` makes, through src/kube/client.ts.

import type { KubeConfig } from '@kubernetes/client-node';
import { MIGRATION_NODE_PLURAL, type MigrationNode } from '../api/migrationnode.ts';
import { READINESS_PLURAL, type MigrationReadiness } from '../api/readiness.ts';
import { GROUP, PLURAL, VERSION, type MigrationProbe } from '../api/v1alpha1.ts';
import { kubeRequest, loadKubeConfig, resourcePath, type ResourceRef } from '../kube/client.ts';
import { isNotFound } from '../kube/errors.ts';
import type { GlobalFlags } from './args.ts';
import type { PluginApi } from './plugin.ts';

/** Who wrote a field (managedFields), as kubectl names itself kubectl-client-side-apply and so on. */
export const PLUGIN_FIELD_MANAGER = 'kubectl-migprobe';

const ref = (plural: string, namespace?: string, name?: string): ResourceRef => ({
  group: GROUP,
  version: VERSION,
  plural,
  ...(namespace === undefined ? {} : { namespace }),
  ...(name === undefined ? {} : { name }),
});

export function pluginApi(kc: KubeConfig): PluginApi {
  const ctx = kc.getContextObject(kc.getCurrentContext());
  const write = { fieldManager: PLUGIN_FIELD_MANAGER };
  return {
    contextNamespace: ctx?.namespace ?? '',
    createProbe: (namespace, body) =>
      kubeRequest<MigrationProbe>(kc, { method: 'POST', path: resourcePath(ref(PLURAL, namespace)), query: write, body }),
    getProbe: (namespace, name) => kubeRequest<MigrationProbe>(kc, { method: 'GET', path: resourcePath(ref(PLURAL, namespace, name)) }),
    getReadiness: async (name) => {
      try {
        return await kubeRequest<MigrationReadiness>(kc, { method: 'GET', path: resourcePath(ref(READINESS_PLURAL, undefined, name)) });
      } catch (err) {
        // A missing object, not a missing resource type: the API server's Status names the object's kind.
        if (isNotFound(err) && (err as { body?: { details?: { name?: string } } }).body?.details?.name === name) return undefined;
        throw err;
      }
    },
    createReadiness: (body) =>
      kubeRequest<MigrationReadiness>(kc, { method: 'POST', path: resourcePath(ref(READINESS_PLURAL)), query: write, body }),
    patchReadiness: (name, patch) =>
      kubeRequest<MigrationReadiness>(kc, {
        method: 'PATCH',
        path: resourcePath(ref(READINESS_PLURAL, undefined, name)),
        query: write,
        body: patch,
        contentType: 'application/merge-patch+json',
      }),
    listMigrationNodes: async () =>
      (await kubeRequest<{ items?: MigrationNode[] }>(kc, { method: 'GET', path: resourcePath(ref(MIGRATION_NODE_PLURAL)) })).items ?? [],
  };
}

export function connect(opts: Pick<GlobalFlags, 'kubeconfig' | 'context'>): PluginApi {
  return pluginApi(loadKubeConfig(opts));
}
