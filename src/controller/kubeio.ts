// The controller's writes to the API server: probe status (merge patch of /status with the field manager and
// the cached resourceVersion as precondition), the finalizer (guarded JSON patches), deletion, and Events.

import { randomBytes } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import { API_VERSION, FIELD_MANAGER, FINALIZER, GROUP, KIND, PLURAL, VERSION, type MigrationProbe, type MigrationProbeStatus } from '../api/v1alpha1.ts';
import { addFinalizer, kubeRequest, mergePatchStatus, removeFinalizer, resourcePath, type ResourceRef } from '../kube/client.ts';
import { isNotFound, safeMessage } from '../kube/errors.ts';
import type { Logger } from '../kube/logger.ts';
import type { Clock } from '../kube/clock.ts';
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

/** core/v1 Events on the probe (what `kubectl describe` shows). Fire and forget: a lost Event is logged. */
export function kubeEventSink(kc: KubeConfig, clock: Clock, log: Logger, component = 'migprobe-controller'): EventSink {
  return {
    event(p, type, reason, message) {
      const ns = p.metadata.namespace ?? 'default';
      const now = new Date(clock.now()).toISOString();
      const body = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: `${p.metadata.name ?? 'probe'}.${randomBytes(8).toString('hex')}`, namespace: ns },
        involvedObject: { apiVersion: API_VERSION, kind: KIND, name: p.metadata.name, namespace: ns, uid: p.metadata.uid, resourceVersion: p.metadata.resourceVersion },
        reason,
        message: message.slice(0, 1024),
        type,
        source: { component },
        reportingComponent: component,
        reportingInstance: component,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      };
      kubeRequest(kc, { method: 'POST', path: `/api/v1/namespaces/${encodeURIComponent(ns)}/events`, body }).catch((e: unknown) => {
        log.warn('could not record an event', { reason, error: safeMessage(e) });
      });
    },
  };
}
