// The node agent's HTTP API: request and response shapes shared by the agent, the controller and peer agents,
// and the pure validation of every input. No I/O.
//
//   PUT    /v1/probes/{uid}                 controller -> source agent: start (idempotent by probe UID); the body
//                                           is a StartRequest of protocol 2: names only (probe, pod, container,
//                                           target node); the agent reads the probe and finds the target agent
//                                           itself (authz.ts, peers.ts)
//   GET    /v1/probes/{uid}                 controller -> agent: the operation's state (404: unknown UID)
//   DELETE /v1/probes/{uid}                 controller -> agent: cancel it if running (workload left running),
//                                           forget it, delete node-side artifacts (204; 202 while it finishes)
//   POST   /v1/probes/{uid}/restore-check   source agent -> target agent: tar.gz image set as the body,
//                                           x-migprobe-sha256 + content-length headers, x-migprobe-request
//                                           (base64url JSON of RestoreCheckRequest); answers RestoreCheckResult
//   GET    /healthz                         unauthenticated liveness

import { CONTAINER_ID_RE, type NodeFacts, type ProbeOptions, type RestoreCheckResult } from '../engine/index.ts';
import type { ProbeStage } from '../engine/index.ts';
import { isReasonCode, type Reason, type Verdict } from '../verdict.ts';

export const AGENT_AUDIENCE = 'migprobe-agent';
/**
 * The start request's version. 2: the caller names the MigrationProbe and no longer sends the target agent's
 * URL, the mode, the checkpoint or the options (the agent takes them from the live probe). A request without
 * `protocol: 2` (a controller older than its agents) is refused with a message that says so.
 */
export const AGENT_PROTOCOL = 2;
export const HEADER_SHA256 = 'x-migprobe-sha256';
export const HEADER_REQUEST = 'x-migprobe-request';

/** The agent's stage of an operation; the controller maps it to the probe's phase. */
export type OperationStage = ProbeStage;
export type OperationState = 'Running' | 'Done' | 'Failed';

export interface StartRequest {
  protocol: typeof AGENT_PROTOCOL;
  /** The MigrationProbe (in `namespace`) whose UID is the path's; the agent reads it from the API server. */
  probeName: string;
  namespace: string;
  podName: string;
  containerName: string;
  /** containerd container ID (without the `containerd://` prefix). */
  containerId: string;
  /** The target node as the caller sees it; must be the probe's. Any `url` here is ignored. */
  target: { nodeName: string };
}

export interface OperationStatus {
  uid: string;
  role: 'source' | 'target';
  state: OperationState;
  stage: OperationStage;
  startedAt: string;
  finishedAt?: string;
  /** Set when state is Done. */
  verdict?: Verdict;
  /** Set when state is Failed: why the operation could not produce a verdict. */
  error?: Reason;
}

export interface RestoreCheckRequest {
  namespace: string;
  podName: string;
  sourceNodeName: string;
  options: ProbeOptions;
  sourceFacts?: NodeFacts;
  /** Set for mode RestoreOnly: the body is an existing checkpoint (image folder contents, or one archive file). */
  restoreOnly?: { kind: 'imagesDir' } | { kind: 'archive'; name: string };
}

export type { RestoreCheckResult };

/** An API error body: a reason code the controller can put into status, and a message. */
export interface ErrorBody {
  code: string;
  message: string;
}

export class ValidationError extends Error {
  override name = 'ValidationError';
}

const UID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SHA256_RE = /^[0-9a-f]{64}$/;

export function isProbeUid(s: string): boolean {
  return UID_RE.test(s);
}
export function isSha256Hex(s: string): boolean {
  return SHA256_RE.test(s);
}
export function isContainerId(s: string): boolean {
  return CONTAINER_ID_RE.test(s);
}

/** `containerd://<id>` -> `<id>`; undefined for any other runtime or a malformed ID. */
export function containerdIdOf(containerID: string | undefined): string | undefined {
  if (containerID === undefined || !containerID.startsWith('containerd://')) return undefined;
  const id = containerID.slice('containerd://'.length);
  return isContainerId(id) ? id : undefined;
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ValidationError(`${what} must be an object`);
  return v as Record<string, unknown>;
}
function str(o: Record<string, unknown>, k: string, re: RegExp, max: number): string {
  const v = o[k];
  if (typeof v !== 'string' || v.length === 0 || v.length > max || !re.test(v)) throw new ValidationError(`${k} is missing or malformed`);
  return v;
}
function bool(o: Record<string, unknown>, k: string): boolean {
  const v = o[k];
  if (typeof v !== 'boolean') throw new ValidationError(`options.${k} must be a boolean`);
  return v;
}
function int(o: Record<string, unknown>, k: string, min: number, max: number): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new ValidationError(`options.${k} must be an integer in [${min}, ${max}]`);
  return v;
}

/** An optional boolean option: absent stays absent, anything but a boolean is refused. */
function optBool(o: Record<string, unknown>, k: 'tcpClose' | 'tcpSkipInFlight' | 'linkRemap'): Partial<ProbeOptions> {
  return o[k] === undefined ? {} : { [k]: bool(o, k) };
}

export function parseProbeOptions(v: unknown): ProbeOptions {
  const o = obj(v, 'options');
  return {
    tcpEstablished: bool(o, 'tcpEstablished'),
    fileLocks: bool(o, 'fileLocks'),
    extUnixSockets: bool(o, 'extUnixSockets'),
    ghostLimitBytes: int(o, 'ghostLimitBytes', 0, 1024 ** 3),
    freezeBudgetMs: int(o, 'freezeBudgetMs', 1, 600_000),
    timeoutMs: int(o, 'timeoutMs', 1000, 3_600_000),
    ...(o['nonLazyMemoryLimitBytes'] === undefined ? {} : { nonLazyMemoryLimitBytes: int(o, 'nonLazyMemoryLimitBytes', 0, 1024 ** 4) }),
    ...optBool(o, 'tcpClose'),
    ...optBool(o, 'tcpSkipInFlight'),
    ...optBool(o, 'linkRemap'),
  };
}

export function parseStartRequest(v: unknown): StartRequest {
  const o = obj(v, 'request');
  if (o['protocol'] !== AGENT_PROTOCOL) {
    throw new ValidationError(`start request of protocol ${JSON.stringify(o['protocol'] ?? 1)}: this agent speaks protocol ${AGENT_PROTOCOL} (names only; it reads the MigrationProbe and finds the target agent itself): run the controller of the same migprobe version as the agents`);
  }
  const t = obj(o['target'], 'target');
  return {
    protocol: AGENT_PROTOCOL,
    probeName: str(o, 'probeName', DNS1123_SUBDOMAIN, 253),
    namespace: str(o, 'namespace', DNS1123_LABEL, 63),
    podName: str(o, 'podName', DNS1123_SUBDOMAIN, 253),
    containerName: str(o, 'containerName', DNS1123_LABEL, 63),
    containerId: str(o, 'containerId', CONTAINER_ID_RE, 128),
    target: { nodeName: str(t, 'nodeName', DNS1123_SUBDOMAIN, 253) },
  };
}

export function parseRestoreCheckRequest(v: unknown): RestoreCheckRequest {
  const o = obj(v, 'request');
  const out: RestoreCheckRequest = {
    namespace: str(o, 'namespace', DNS1123_LABEL, 63),
    podName: str(o, 'podName', DNS1123_SUBDOMAIN, 253),
    sourceNodeName: str(o, 'sourceNodeName', DNS1123_SUBDOMAIN, 253),
    options: parseProbeOptions(o['options']),
  };
  if (o['sourceFacts'] !== undefined) out.sourceFacts = obj(o['sourceFacts'], 'sourceFacts') as unknown as NodeFacts;
  if (o['restoreOnly'] !== undefined) {
    const r = obj(o['restoreOnly'], 'restoreOnly');
    if (r['kind'] === 'imagesDir') out.restoreOnly = { kind: 'imagesDir' };
    // A file name, never a path: the kubelet's names carry an RFC 3339 time (checkpoint-<pod>_<ns>-<ctr>-2026-12-02T10:43:00Z.tar).
    else if (r['kind'] === 'archive') out.restoreOnly = { kind: 'archive', name: str(r, 'name', /^[A-Za-z0-9][A-Za-z0-9._:+-]*$/, 255) };
    else throw new ValidationError('restoreOnly.kind must be imagesDir or archive');
  }
  return out;
}

export function encodeHeaderJson(v: unknown): string {
  return Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');
}
export function decodeHeaderJson(s: string): unknown {
  return JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as unknown;
}

/** A reason from an untrusted peer: kept only when its code is a known one. */
export function sanitizeReason(v: unknown, fallbackPhase: Reason['phase']): Reason | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Record<string, unknown>;
  const code = r['code'];
  if (typeof code !== 'string' || !isReasonCode(code)) return undefined;
  const phases = ['preflight', 'dump', 'transfer', 'restore', 'compat', 'setup'];
  const phase = typeof r['phase'] === 'string' && phases.includes(r['phase']) ? (r['phase'] as Reason['phase']) : fallbackPhase;
  return {
    code,
    message: typeof r['message'] === 'string' ? r['message'].slice(0, 4096) : code,
    hint: typeof r['hint'] === 'string' ? r['hint'].slice(0, 4096) : '',
    phase,
  };
}
