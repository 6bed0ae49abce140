// Talking to the Kubernetes API: loading a KubeConfig, a small raw request helper (for any path, including
// subresources, with an exact Content-Type), and the typed writes a controller needs:
//
// - `mergePatchStatus`  : JSON merge patch of the `/status` subresource, with an explicit field manager.
// - `applyStatus`       : server-side apply of the `/status` subresource (`fieldManager`, `force`).
// - `addFinalizer` / `removeFinalizer`: JSON patches with a `test` op, so a concurrent change to the list
//   (another controller's finalizer) makes the patch fail instead of being overwritten; retried on a fresh
//   read. Never replace the whole finalizer list.
//
// Errors are `KubeApiError` (`code` = HTTP status, `body` = the parsed V1Status when there is one) whose
// `message` is safe to show (Status.message only): errors.ts reads it like any client-node error.
// TLS and credentials come from the KubeConfig (`applyToHTTPSOptions`), as client-node's own calls do.

import https from 'node:https';
import http from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';
import type { StatusBody } from './errors.ts';
import { isConflict, isNotFound, statusOf } from './errors.ts';

export interface LoadKubeConfigOptions {
  /** --kubeconfig: a file. Wins over everything. */
  kubeconfig?: string;
  /** --context */
  context?: string;
}

/**
 * `--kubeconfig` if given; else `$KUBECONFIG`; else the in-cluster ServiceAccount when running in a pod;
 * else ~/.kube/config (client-node's default order).
 */
export function loadKubeConfig(opts: LoadKubeConfigOptions = {}): KubeConfig {
  const kc = new KubeConfig();
  if (opts.kubeconfig !== undefined && opts.kubeconfig !== '') {
    kc.loadFromFile(opts.kubeconfig);
  } else if ((process.env.KUBECONFIG ?? '') === '' && (process.env.KUBERNETES_SERVICE_HOST ?? '') !== '') {
    kc.loadFromCluster();
  } else {
    kc.loadFromDefault();
  }
  if (opts.context !== undefined) {
    if (kc.getContextObject(opts.context) === null) {
      const have = kc.getContexts().map((c) => c.name);
      throw new Error(`no context ${JSON.stringify(opts.context)} in the kubeconfig (it has ${have.length === 0 ? 'none' : have.join(', ')}): pass one of them with --context`);
    }
    kc.setCurrentContext(opts.context);
  }
  if (kc.getCurrentCluster() === null) throw new Error('no Kubernetes cluster configured: pass --kubeconfig or set KUBECONFIG');
  return kc;
}

/** An API answer that was not 2xx. `message` is safe to show; `body` is the parsed Status if any. */
export class KubeApiError extends Error {
  readonly code: number;
  readonly body: unknown;
  constructor(code: number, body: unknown) {
    const status = body as StatusBody | undefined;
    const text = typeof status?.message === 'string' && status.message !== '' ? `: ${status.message}` : '';
    super(`HTTP ${code}${text}`);
    this.name = 'KubeApiError';
    this.code = code;
    this.body = body;
  }
}

export interface KubeRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Absolute API path, e.g. /apis/migprobe.io/v1alpha1/namespaces/default/migrationprobes/p1/status */
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
  /** Default 30 s. */
  timeoutMs?: number;
}

/** One request to the API server; resolves the parsed JSON body of a 2xx answer, throws KubeApiError else. */
export async function kubeRequest<T = unknown>(kc: KubeConfig, req: KubeRequest): Promise<T> {
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new Error('no current cluster in the kubeconfig');
  const url = new URL(cluster.server.replace(/\/+$/, '') + req.path);
  for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
  const opts: https.RequestOptions = { method: req.method, headers: {} };
  await kc.applyToHTTPSOptions(opts);
  const headers = (opts.headers ?? {}) as Record<string, string>;
  headers.Accept = 'application/json';
  let payload: string | undefined;
  if (req.body !== undefined) {
    payload = JSON.stringify(req.body);
    headers['Content-Type'] = req.contentType ?? 'application/json';
    headers['Content-Length'] = String(Buffer.byteLength(payload));
  }
  opts.headers = headers;
  if (opts.agent === undefined && url.protocol === 'https:') {
    const tls: https.AgentOptions = {};
    if (opts.ca !== undefined) tls.ca = opts.ca;
    if (opts.cert !== undefined) tls.cert = opts.cert;
    if (opts.key !== undefined) tls.key = opts.key;
    if (opts.rejectUnauthorized !== undefined) tls.rejectUnauthorized = opts.rejectUnauthorized;
    if (opts.servername !== undefined) tls.servername = opts.servername;
    opts.agent = new https.Agent({ ...tls, keepAlive: false });
  }
  const mod = url.protocol === 'https:' ? https : http;
  const timeoutMs = req.timeoutMs ?? 30_000;
  return await new Promise<T>((resolve, reject) => {
    const r = mod.request(url, { ...opts, signal: req.signal }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = text === '' ? undefined : (JSON.parse(text) as unknown);
        } catch {
          // keep the text
        }
        const code = res.statusCode ?? 0;
        if (code >= 200 && code < 300) resolve(parsed as T);
        else reject(new KubeApiError(code, typeof parsed === 'object' ? parsed : undefined));
      });
    });
    r.setTimeout(timeoutMs, () => r.destroy(new Error(`request to the Kubernetes API timed out after ${timeoutMs} ms`)));
    r.on('error', reject);
    if (payload !== undefined) r.write(payload);
    r.end();
  });
}

/** Where a resource lives. `group` '' is the core API. */
export interface ResourceRef {
  group: string;
  version: string;
  /** Lower-case plural, e.g. `migrationprobes`. */
  plural: string;
  namespace?: string;
  name?: string;
}

export function resourcePath(ref: ResourceRef, subresource?: string): string {
  let p = ref.group === '' ? `/api/${ref.version}` : `/apis/${ref.group}/${ref.version}`;
  if (ref.namespace !== undefined && ref.namespace !== '') p += `/namespaces/${encodeURIComponent(ref.namespace)}`;
  p += `/${ref.plural}`;
  if (ref.name !== undefined) p += `/${encodeURIComponent(ref.name)}`;
  if (subresource !== undefined) p += `/${subresource}`;
  return p;
}

function named(ref: ResourceRef): ResourceRef & { name: string } {
  if (ref.name === undefined || ref.name === '') throw new Error(`resource reference without a name: ${ref.plural}`);
  return { ...ref, name: ref.name };
}

export interface WriteOptions {
  /** Who owns the fields written (managedFields). Required: never let the client default it. */
  fieldManager: string;
  signal?: AbortSignal;
}

/** GET one object. */
export async function getObject<T>(kc: KubeConfig, ref: ResourceRef, signal?: AbortSignal): Promise<T> {
  return await kubeRequest<T>(kc, { method: 'GET', path: resourcePath(named(ref)), ...(signal ? { signal } : {}) });
}

/**
 * JSON merge patch of `/status`: only the keys given change (`null` deletes a key). Pass
 * `resourceVersion` to make it conditional (409 if the object changed since).
 */
export async function mergePatchStatus<T>(
  kc: KubeConfig,
  ref: ResourceRef,
  status: Record<string, unknown>,
  opts: WriteOptions & { resourceVersion?: string },
): Promise<T> {
  const body: Record<string, unknown> = { status };
  if (opts.resourceVersion !== undefined) body.metadata = { resourceVersion: opts.resourceVersion };
  return await kubeRequest<T>(kc, {
    method: 'PATCH',
    path: resourcePath(named(ref), 'status'),
    query: { fieldManager: opts.fieldManager },
    body,
    contentType: 'application/merge-patch+json',
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
}

/**
 * Server-side apply of `/status`: `status` is the complete set of status fields this manager owns (fields
 * it owned before and omits now are removed). `force` takes over fields owned by other managers.
 */
export async function applyStatus<T>(
  kc: KubeConfig,
  ref: ResourceRef & { kind: string },
  status: Record<string, unknown>,
  opts: WriteOptions & { force?: boolean },
): Promise<T> {
  const r = named(ref);
  const apiVersion = r.group === '' ? r.version : `${r.group}/${r.version}`;
  const metadata: Record<string, string> = { name: r.name };
  if (r.namespace !== undefined) metadata.namespace = r.namespace;
  return await kubeRequest<T>(kc, {
    method: 'PATCH',
    path: resourcePath(r, 'status'),
    query: { fieldManager: opts.fieldManager, force: opts.force ?? true },
    body: { apiVersion, kind: ref.kind, metadata, status },
    contentType: 'application/apply-patch+yaml',
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
}

export type JsonPatchOp =
  | { op: 'test' | 'add' | 'replace'; path: string; value: unknown }
  | { op: 'remove'; path: string };

interface WithMeta {
  metadata?: { finalizers?: string[]; resourceVersion?: string };
}

/** The JSON patch that removes `finalizer` from `obj` (as last read), guarded by a `test`; none if absent. */
export function removeFinalizerPatch(obj: WithMeta, finalizer: string): JsonPatchOp[] | undefined {
  const list = obj.metadata?.finalizers ?? [];
  const i = list.indexOf(finalizer);
  if (i < 0) return undefined;
  return [
    { op: 'test', path: `/metadata/finalizers/${i}`, value: finalizer },
    { op: 'remove', path: `/metadata/finalizers/${i}` },
  ];
}

/** The JSON patch that adds `finalizer` to `obj` (as last read); none if present. */
export function addFinalizerPatch(obj: WithMeta, finalizer: string): JsonPatchOp[] | undefined {
  const list = obj.metadata?.finalizers;
  if (list?.includes(finalizer) === true) return undefined;
  if (list === undefined || list.length === 0) {
    // There is no way to `test` that a path is absent: guard on the resourceVersion instead.
    const guard: JsonPatchOp[] =
      obj.metadata?.resourceVersion !== undefined
        ? [{ op: 'test', path: '/metadata/resourceVersion', value: obj.metadata.resourceVersion }]
        : [];
    return [...guard, { op: 'add', path: '/metadata/finalizers', value: [finalizer] }];
  }
  return [
    { op: 'test', path: `/metadata/finalizers/${list.length - 1}`, value: list[list.length - 1] },
    { op: 'add', path: '/metadata/finalizers/-', value: finalizer },
  ];
}

/** A failed JSON-patch `test` answers 422 (Invalid) or, on some paths, 409. */
function isStalePatch(err: unknown): boolean {
  const code = statusOf(err);
  return code === 422 || isConflict(err);
}

async function patchFinalizers<T extends WithMeta>(
  kc: KubeConfig,
  ref: ResourceRef,
  obj: T | undefined,
  build: (o: WithMeta) => JsonPatchOp[] | undefined,
  opts: WriteOptions,
): Promise<T | undefined> {
  let current: T | undefined = obj ?? (await getObject<T>(kc, ref, opts.signal));
  for (let attempt = 0; ; attempt++) {
    const patch = build(current);
    if (patch === undefined) return current;
    try {
      return await kubeRequest<T>(kc, {
        method: 'PATCH',
        path: resourcePath(named(ref)),
        query: { fieldManager: opts.fieldManager },
        body: patch,
        contentType: 'application/json-patch+json',
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } catch (err) {
      if (!isStalePatch(err) || attempt >= 4) throw err;
      current = await getObject<T>(kc, ref, opts.signal);
    }
  }
}

/** Adds or removes one finalizer; `opts.current` saves a read when the caller has the object. */
export type FinalizerWrite = <T extends WithMeta>(kc: KubeConfig, ref: ResourceRef, finalizer: string, opts: WriteOptions & { current?: T }) => Promise<T | undefined>;

/**
 * Removes `finalizer` with a `test`-guarded JSON patch, re-reading and retrying when the list changed.
 * Resolves the updated object, or undefined if the object is gone (404: nothing left to do).
 */
export const removeFinalizer: FinalizerWrite = async (kc, ref, finalizer, opts) => {
  try {
    return await patchFinalizers(kc, ref, opts.current, (o) => removeFinalizerPatch(o, finalizer), opts);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
};

/** Adds `finalizer` with a guarded JSON patch (retried on a fresh read if the object changed). */
export const addFinalizer: FinalizerWrite = async (kc, ref, finalizer, opts) =>
  await patchFinalizers(kc, ref, opts.current, (o) => addFinalizerPatch(o, finalizer), opts);

/** `namespace/name` (or `name` for cluster-scoped objects): the work-queue key of an object. */
export function objectKey(obj: { metadata?: { namespace?: string; name?: string } }): string {
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name ?? '';
  return ns !== undefined && ns !== '' ? `${ns}/${name}` : name;
}

/** Splits a key made by `objectKey`. */
export function splitKey(key: string): { namespace?: string; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
