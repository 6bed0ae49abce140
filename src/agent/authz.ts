// Authorization on the node agent, after authentication (auth.ts) said who the caller is: which ServiceAccount
// may call which endpoint, whether a start request is backed by a live MigrationProbe that names this pod,
// container and target node, and whether a restore-only checkpoint provably belongs to the probe's namespace.
// Pure functions; the agent reads the probe, the pod and namespaces from the API server itself (kubeauth.ts).
//
//   endpoint                          who may call it
//   PUT/GET/DELETE /v1/probes/{uid}   the controller's ServiceAccount(s) (--allow-service-account)
//   POST /v1/probes/{uid}/restore-check   peer agents' ServiceAccount(s) (--peer-service-account) only

import { isFinalPhase, probeOptionsFromSpec, type MigrationProbe, type ProbeMode } from '../api/v1alpha1.ts';
import type { ProbeOptions } from '../engine/index.ts';
import type { PodInfo } from './deps.ts';
import type { StartRequest } from '../agent-api/protocol.ts';

export type Endpoint = 'probe' | 'restore-check';

/** Which authenticated users may call which endpoint (`system:serviceaccount:<ns>:<name>`). */
export interface CallerPolicy {
  controllers: readonly string[];
  peers: readonly string[];
}

/** Undefined when `username` may call `endpoint`, else why not (answered 403). */
export function endpointRefusal(policy: CallerPolicy, username: string, endpoint: Endpoint): string | undefined {
  if (endpoint === 'restore-check') {
    return policy.peers.includes(username) ? undefined : `user ${username} may not call the restore-check endpoint: only peer agents may (--peer-service-account)`;
  }
  return policy.controllers.includes(username) ? undefined : `user ${username} may not start, read or delete probes: only the controller may (--allow-service-account)`;
}

/** A refusal the agent answers with: HTTP status, reason code, message. */
export interface Refusal {
  status: number;
  code: 'ProbeNotFound' | 'ProbeMismatch' | 'CheckpointNotAllowed';
  message: string;
}

/** What a start may do, taken from the live probe (never from the caller's request). */
export interface AuthorizedStart {
  mode: ProbeMode;
  checkpointPath?: string;
  options: ProbeOptions;
  targetNodeName: string;
}

/**
 * The live MigrationProbe `probe` (read by the agent, by namespace and name, from the API server) must have the
 * UID of the request's path, not be finished or being deleted, and name the request's pod, container (or leave
 * it to the pod's first container) and target node. The mode, checkpoint and options come from it.
 */
export function authorizeStart(probe: MigrationProbe | undefined, uid: string, req: StartRequest, pod: Pick<PodInfo, 'containerNames'> | undefined): AuthorizedStart | Refusal {
  const where = `MigrationProbe ${req.namespace}/${req.probeName}`;
  if (probe === undefined) return { status: 404, code: 'ProbeNotFound', message: `no ${where} (a probe must be in the namespace of the pod it names)` };
  if (probe.metadata.uid !== uid) return { status: 404, code: 'ProbeNotFound', message: `${where} has UID ${probe.metadata.uid ?? '(none)'}, not ${uid}` };
  if (probe.metadata.deletionTimestamp !== undefined || isFinalPhase(probe.status?.phase)) {
    return { status: 404, code: 'ProbeNotFound', message: `${where} is ${probe.metadata.deletionTimestamp !== undefined ? 'being deleted' : 'finished'}` };
  }
  const s = probe.spec;
  if (s.podName !== req.podName) return { status: 403, code: 'ProbeMismatch', message: `${where} names pod ${s.podName}, not ${req.podName}` };
  const container = s.containerName ?? pod?.containerNames[0];
  if (container !== req.containerName) return { status: 403, code: 'ProbeMismatch', message: `${where} names container ${container ?? '(none)'}, not ${req.containerName}` };
  if (s.targetNodeName !== req.target.nodeName) return { status: 403, code: 'ProbeMismatch', message: `${where} names target node ${s.targetNodeName}, not ${req.target.nodeName}` };
  const out: AuthorizedStart = { mode: s.mode ?? 'Check', options: probeOptionsFromSpec(s), targetNodeName: s.targetNodeName };
  if (s.checkpoint !== undefined) out.checkpointPath = s.checkpoint.path;
  return out;
}

export function isRefusal(v: AuthorizedStart | Refusal): v is Refusal {
  return 'code' in v;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
// The kubelet's name: checkpoint-<pod>_<namespace>-<container>-<RFC 3339 time>.tar (pkg/kubelet/server: the pod's
// full name is <pod>_<namespace>). Neither a pod nor a namespace name can hold '_'.
const KUBELET_NAME = /^checkpoint-([a-z0-9][-a-z0-9.]*)_([-a-z0-9]+)-(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))\.tar$/;

/** What the checkpoint's place says about its namespace. */
export type CheckpointOwnership =
  | { ok: true; how: 'folder' | 'kubelet-name'; otherNamespaces: string[] }
  | { ok: false; message: string };

/**
 * Does `rel` (the checkpoint's real path relative to the agent's real checkpoint folder) prove that the
 * checkpoint belongs to `namespace`? Two layouts do:
 * - `<namespace>/<anything>`: a folder per namespace (an operator's layout);
 * - `checkpoint-<pod>_<namespace>-<container>-<time>.tar` directly in the folder (the kubelet's name).
 * A kubelet name splits `<namespace>-<container>` at the first '-' only by convention: `otherNamespaces` lists
 * the other splits (another namespace that could own the same name); the caller refuses when one exists.
 */
export function checkpointOwnership(rel: string, namespace: string): CheckpointOwnership {
  const hint = `put it in <checkpoint folder>/${namespace}/, or keep the kubelet's name checkpoint-<pod>_${namespace}-<container>-<time>.tar`;
  const parts = rel.split('/').filter((p) => p !== '');
  if (parts.length >= 2) {
    if (parts[0] === namespace) return { ok: true, how: 'folder', otherNamespaces: [] };
    return { ok: false, message: `checkpoint is in folder ${parts[0] ?? ''}/, not in ${namespace}/ (the probe's namespace): ${hint}` };
  }
  const m = KUBELET_NAME.exec(parts[0] ?? '');
  if (!m) return { ok: false, message: `checkpoint ${rel} does not say its namespace: ${hint}` };
  const rest = m[2] ?? '';
  if (!rest.startsWith(`${namespace}-`) || !DNS1123_LABEL.test(rest.slice(namespace.length + 1))) {
    return { ok: false, message: `checkpoint ${rel} is not of namespace ${namespace} (the kubelet names a checkpoint checkpoint-<pod>_<namespace>-<container>-<time>.tar): ${hint}` };
  }
  // Every other '-' of `<namespace>-<container>` is another reading: namespace = the part before it.
  const others: string[] = [];
  for (let i = rest.indexOf('-'); i > 0; i = rest.indexOf('-', i + 1)) {
    const ns = rest.slice(0, i);
    if (ns !== namespace && DNS1123_LABEL.test(ns) && DNS1123_LABEL.test(rest.slice(i + 1))) others.push(ns);
  }
  return { ok: true, how: 'kubelet-name', otherNamespaces: others };
}
