// The readiness controller's writes: its status (merge patch of /status with the field manager and the cached
// resourceVersion as precondition), the probes it fans out (create; delete of older runs), and its Events.

import type { KubeConfig } from '@kubernetes/client-node';
import { READINESS_KIND, READINESS_PLURAL, type MigrationReadiness } from '../../api/readiness.ts';
import { API_VERSION, FIELD_MANAGER, GROUP, PLURAL, VERSION, type MigrationProbe } from '../../api/v1alpha1.ts';
import { kubeRequest, mergePatchStatus, resourcePath } from '../../kube/client.ts';
import { isConflict } from '../../kube/errors.ts';
import { kubeProbeWriter } from '../kubeio.ts';
import type { EventRecorder } from '../../kube/events.ts';
import type { ReadinessEventSink, ReadinessWriter } from './reconcile.ts';

export function kubeReadinessWriter(kc: KubeConfig): ReadinessWriter {
  const probes = kubeProbeWriter(kc);
  return {
    async patchStatus(r: MigrationReadiness, status: Record<string, unknown>) {
      await mergePatchStatus(kc, { group: GROUP, version: VERSION, plural: READINESS_PLURAL, name: r.metadata.name ?? '' }, status, {
        fieldManager: FIELD_MANAGER,
        ...(r.metadata.resourceVersion !== undefined ? { resourceVersion: r.metadata.resourceVersion } : {}),
      });
    },
    async createProbe(p: MigrationProbe) {
      try {
        await kubeRequest(kc, {
          method: 'POST',
          path: resourcePath({ group: GROUP, version: VERSION, plural: PLURAL, namespace: p.metadata.namespace ?? '' }),
          query: { fieldManager: FIELD_MANAGER },
          body: p,
        });
      } catch (e) {
        if (!isConflict(e)) throw e; // 409 AlreadyExists: made by an earlier reconcile
      }
    },
    deleteProbe: (p: MigrationProbe) => probes.delete(p),
  };
}

/** Events on the readiness (cluster-scoped: the recorder puts them in namespace default, as for Nodes). */
export function readinessEventSink(recorder: EventRecorder): ReadinessEventSink {
  return {
    event(r, type, reason, message) {
      const metadata: { name?: string; uid?: string; resourceVersion?: string } = {};
      if (r.metadata.name !== undefined) metadata.name = r.metadata.name;
      if (r.metadata.uid !== undefined) metadata.uid = r.metadata.uid;
      if (r.metadata.resourceVersion !== undefined) metadata.resourceVersion = r.metadata.resourceVersion;
      recorder.record({ apiVersion: API_VERSION, kind: READINESS_KIND, metadata }, type, reason, message);
    },
  };
}
