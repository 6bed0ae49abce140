// Shared helpers of the chart tests: where the chart is, its values cases, rendering it with a real Helm,
// and reading the rendered objects. Argument arrays only.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createServer as createTlsServer, connect as tlsConnect } from 'node:tls';
import { parseAllDocuments, stringify } from 'yaml';
import { run } from '../../testbed/proc.ts';
import type { Testbed } from '../../testbed/index.ts';

import { CHART_DIR, ROOT } from '../../testbed/paths.ts';

export { CHART_DIR, ROOT };
export const CRDS_DIR = join(ROOT, 'crds');
export const FIXTURES = join(ROOT, 'test', 'chart', 'fixtures');

/** The default values, then every values file in the chart's ci/ folder. */
export interface ValuesCase {
  name: string;
  /** `-f` argument, absent for the defaults. */
  file?: string;
}

export function valuesCases(): ValuesCase[] {
  const ci = readdirSync(join(CHART_DIR, 'ci'))
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => ({ name: f, file: join(CHART_DIR, 'ci', f) }));
  return [{ name: 'default values' }, ...ci];
}

export function valuesArgs(c: ValuesCase): string[] {
  return c.file ? ['-f', c.file] : [];
}

/** A Kubernetes object as parsed from YAML: only the fields the tests read are typed. */
export interface KObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
}

export function parseObjects(text: string): KObject[] {
  const out: KObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors.map((e) => e.message).join('; ')}`);
    const v: unknown = doc.toJS();
    if (v === null || v === undefined) continue;
    out.push(v as KObject);
  }
  return out;
}

export async function helmTemplate(
  helm: string,
  opts: { release?: string; namespace?: string; args?: string[] },
): Promise<string> {
  const res = await run(
    helm,
    ['template', opts.release ?? 'migprobe', CHART_DIR, '--namespace', opts.namespace ?? 'migprobe-system', ...(opts.args ?? [])],
    { timeoutMs: 60_000 },
  );
  return res.stdout;
}

export function findObject(objs: KObject[], kind: string, nameSuffix: string): KObject {
  const o = objs.find((x) => x.kind === kind && x.metadata.name.endsWith(nameSuffix));
  if (!o) throw new Error(`no ${kind} named *${nameSuffix} in: ${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`);
  return o;
}

/** Reads a nested field by path; the tests assert on shapes, so a missing step is `undefined`. */
export function at(o: unknown, ...path: (string | number)[]): unknown {
  let cur: unknown = o;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[p];
  }
  return cur;
}

/**
 * A real TLS handshake on loopback: a server with `cert`/`key`, a client that trusts only `ca` and checks
 * `serverName`. Resolves when the client accepts the server; rejects with the TLS error otherwise.
 */
export async function tlsHandshake(pem: { ca: string; cert: string; key: string }, serverName: string): Promise<void> {
  const server = createTlsServer({ cert: pem.cert, key: pem.key }, (s) => s.end());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  try {
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    await new Promise<void>((resolve, reject) => {
      const sock = tlsConnect({ host: '127.0.0.1', port, ca: pem.ca, servername: serverName }, () => {
        sock.end();
        resolve();
      });
      sock.once('error', reject);
    });
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

/** The three PEMs of a Secret in the chart's TLS layout (base64 data). */
export function tlsPems(secret: { data?: Record<string, string> }): { ca: string; cert: string; key: string } {
  const get = (k: string): string => Buffer.from(secret.data?.[k] ?? '', 'base64').toString('utf8');
  return { ca: get('ca.crt'), cert: get('tls.crt'), key: get('tls.key') };
}

/** A kubeconfig that authenticates with `token` against the test bed's API server. */
export function tokenKubeconfig(tb: Pick<Testbed, 'apiserverUrl' | 'apiserver'>, token: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'testbed', cluster: { server: tb.apiserverUrl, 'certificate-authority': tb.apiserver.caFile } }],
    users: [{ name: 'sa', user: { token } }],
    contexts: [{ name: 'sa', context: { cluster: 'testbed', user: 'sa' } }],
    'current-context': 'sa',
  });
}

/** The controller's flags as the chart renders them, with the pod's environment substituted. */
export function chartControllerArgs(objs: KObject[], namespace: string, drop = ['--agent-port', '--agent-scheme', '--agent-ca-file', '--metrics-bind', '--token-file']): string[] {
  const args = at(findObject(objs, 'Deployment', '-controller'), 'spec', 'template', 'spec', 'containers', 0, 'args') as string[];
  // By default the caller (test/operator/harness.ts) chooses the agents' port, their TLS certificate (and so
  // the CA file and scheme) and the metrics address; the token comes from a file the test writes (the kubelet
  // would project it).
  return args.filter((a) => !drop.some((f) => a.startsWith(`${f}=`))).map((a) => a.replaceAll('$(POD_NAMESPACE)', namespace));
}

/**
 * An RBAC denial as the API server words it ('pods is forbidden: User "system:serviceaccount:ns:sa" cannot
 * list resource "pods" ...'). Other 403s (e.g. writing into a terminating namespace) are not RBAC's.
 */
export const RBAC_DENIAL = /forbidden: User \\?"[^"\\]+\\?" cannot [a-z]+ resource/;
