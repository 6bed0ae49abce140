// The controller's writes to the API server: probe status (merge patch of /status with the field manager and
// the cached resourceVersion as precondition), the finalizer (guarded JSON patches), deletion, and Events.

import type { KubeConfig } from '@kubernetes/client-node';
import { API_VERSION, FIELD_MANAGER, FINALIZER, GROUP, KIND, PLURAL, VERSION, type MigrationProbe, type MigrationProbeStatus } from '../api/v1alpha1.ts';
import { addFinalizer, kubeRequest, mergePatchStatus, removeFinalizer, resourcePath, type ResourceRef } from '../kube/client.ts';
import { isNotFound } from '../kube/errors.ts';
import type { EventRecorder } from '../kube/events.ts';
import type { EventSink, ProbeWriter } from './reconcile.ts';

function refOf(p: MigrationProbe): ResourceRef {
  return { group: GROUP, version: VERSION, plural: PLURAL, namespace: p.metadata.namespace ?? '', name: p.metadata.name ?? '' };
}

export function kubeProbeWriter(kc: KubeConfig): ProbeWriter {
  return {
    async patchStatus(p: MigrationProbe, status: MigrationProbeStatus) {
      await mergePatchStatus(kc, refOf(p), status as Record<string, unknown>, {
        fieldManager: FIELD_MANAGER,
        ...(p.metadata.resourceVersion !== undefined ? { resourceVersion: p.metadata.resourceVersion } : {}),
      });
    },
    async addFinalizer(p: MigrationProbe) {
      await addFinalizer(kc, refOf(p), FINALIZER, { fieldManager: FIELD_MANAGER, current: p });
    },
    async removeFinalizer(p: MigrationProbe) {
      await removeFinalizer(kc, refOf(p), FINALIZER, { fieldManager: FIELD_MANAGER, current: p });
    },
    async delete(p: MigrationProbe) {
      try {
        await kubeRequest(kc, {
          method: 'DELETE',
          path: resourcePath(refOf(p)),
          body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background', preconditions: { uid: p.metadata.uid } },
        });
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    },
  };
}

/** Events on the probe (what `kubectl describe` shows), through kube/events.ts (best effort, aggregated). */
export function recorderEventSink(recorder: EventRecorder): EventSink {
  return {
    event(p, type, reason, message) {
      const metadata: { name?: string; namespace?: string; uid?: string; resourceVersion?: string } = {};
      if (p.metadata.name !== undefined) metadata.name = p.metadata.name;
      if (p.metadata.namespace !== undefined) metadata.namespace = p.metadata.namespace;
      if (p.metadata.uid !== undefined) metadata.uid = p.metadata.uid;
      if (p.metadata.resourceVersion !== undefined) metadata.resourceVersion = p.metadata.resourceVersion;
      recorder.record({ apiVersion: API_VERSION, kind: KIND, metadata }, type, reason, message);
    },
  };
}
