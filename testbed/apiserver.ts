// A real Kubernetes API server for tests, the way controller-runtime's envtest runs one: etcd plus
// kube-apiserver, loopback only, RBAC on, ServiceAccount token signing (so TokenRequest and TokenReview
// work), a static admin token, and a kubeconfig written for kubectl and the tests. No kubelet, no
// controller-manager, no scheduler: tests create Node and Pod objects themselves.
// With `cluster` set it is instead the API server of the test bed's real cluster (testbed/cluster.ts):
// bound to a node IP pods can reach, a service CIDR whose first address is the `kubernetes` Service, the
// ServiceAccount and NodeRestriction admission plugins, Node+RBAC authorization, static tokens for the
// kubelets and control-plane components, and a client certificate for calling the kubelets.

import { mkdirSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { Agent, request } from 'node:https';
import { run, startDaemon, stopDaemon, waitFor, tailOf, isAlive } from './proc.ts';

export interface ApiServerState {
  dir: string;
  url: string;
  host: string;
  port: number;
  etcdPort: number;
  etcdPid: number;
  apiserverPid: number;
  kubeconfigPath: string;
  adminToken: string;
  caFile: string;
  cluster?: ClusterApiOptions;
  /** Cluster mode: a static bearer token per user of `cluster.users`. */
  tokens?: Record<string, string>;
}

/** The API server of a real cluster (kubelets, controllers, kube-proxy), not the simulated test bed's. */
export interface ClusterApiOptions {
  /** The Service CIDR; its first address is the `kubernetes` Service's ClusterIP. */
  serviceCidr: string;
  serviceIP: string;
  port: number;
  /** Users to mint static tokens for, e.g. system:node:node-a in system:nodes. */
  users: { name: string; groups: string[] }[];
}

export interface ApiServerBinaries {
  apiserver: string;
  etcd: string;
}

export function binariesFromEnv(): ApiServerBinaries {
  const apiserver = process.env.MIGPROBE_KUBE_APISERVER ?? '';
  const etcd = process.env.MIGPROBE_ETCD ?? '';
  if (!apiserver || !existsSync(apiserver) || !etcd || !existsSync(etcd)) {
    throw new Error(
      'kube-apiserver or etcd is missing: run `bash hack/provision.sh` (it builds kube-apiserver with Go and ' +
        'installs Debian etcd-server), then `. ~/.cache/migprobe/env.sh`; hack/test.sh does both',
    );
  }
  return { apiserver, etcd };
}

/** A TCP port that was free a moment ago on `host`. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function ssl(args: string[]): Promise<void> {
  await run('openssl', args, { timeoutMs: 30_000 });
}

// ECDSA P-256 keys: an RSA 2048 key takes openssl 0.1-1.5 s of CPU (a random search for primes), and a cluster
// start makes one per node plus three on its critical path; a P-256 key takes about a millisecond.
const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];

/**
 * Writes `<name>.key` and `<name>.crt` into `dir`, signed by the test bed CA there (ca.crt, ca.key).
 * `subject` like `/CN=x/O=group`; `ips` become IP subjectAltNames.
 */
export async function signCert(dir: string, name: string, subject: string, ips: string[] = [], dns: string[] = []): Promise<void> {
  await ssl(['req', ...NEW_KEY, '-nodes', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.csr`), '-subj', subject]);
  const sans = [...ips.map((ip) => `IP:${ip}`), ...dns.map((d) => `DNS:${d}`)];
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, sans.length > 0 ? `subjectAltName=${sans.join(',')}\n` : 'basicConstraints=CA:FALSE\n');
  // A random serial, not a serial file: certificates may be signed concurrently.
  await ssl(['x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'),
    '-set_serial', `0x${randomBytes(16).toString('hex')}`, '-out', join(dir, `${name}.crt`), '-days', '3650', '-extfile', ext]);
}

async function makeCerts(dir: string, host: string, cluster?: ClusterApiOptions): Promise<void> {
  if (existsSync(join(dir, 'apiserver.crt'))) return;
  await ssl(['req', '-x509', ...NEW_KEY, '-nodes', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt'),
    '-subj', '/CN=migprobe-testbed-ca', '-days', '3650']);
  const ips = [host, '127.0.0.1', '10.0.0.1', ...(cluster ? [cluster.serviceIP] : [])];
  await Promise.all([
    signCert(dir, 'apiserver', '/CN=kube-apiserver', ips, ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local']),
    // The API server calls kubelets (exec, logs, port-forward) with this; kubelets authorize system:masters.
    ...(cluster ? [signCert(dir, 'kubelet-client', '/CN=kube-apiserver-kubelet-client/O=system:masters')] : []),
  ]);
  // ES256 service-account tokens (the API server and the controller-manager take ECDSA keys): an RSA key would
  // block this process's event loop for up to a second while the runtimes start beside it.
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  writeFileSync(join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
}

/** A kubeconfig for `url` with a bearer token, the test bed CA trusted. */
export function kubeconfig(url: string, caFile: string, token: string): string {
  const ca = readFileSync(caFile).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: testbed',
    '  cluster:',
    `    server: ${url}`,
    `    certificate-authority-data: ${ca}`,
    'users:',
    '- name: admin',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: testbed',
    '  context: {cluster: testbed, user: admin, namespace: default}',
    'current-context: testbed',
    '',
  ].join('\n');
}

/** GET `path` on the API server with the admin token; resolves the status code and body. */
export async function apiGet(st: ApiServerState, path: string): Promise<{ status: number; body: string }> {
  const agent = new Agent({ ca: readFileSync(st.caFile) });
  return await new Promise((resolve, reject) => {
    const req = request(
      `${st.url}${path}`,
      { agent, headers: { Authorization: `Bearer ${st.adminToken}` }, timeout: 5000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

export async function isReady(st: ApiServerState): Promise<boolean> {
  try {
    return (await apiGet(st, '/readyz')).status === 200;
  } catch {
    return false;
  }
}

function clusterArgs(st: ApiServerState, c: ClusterApiOptions): string[] {
  const d = st.dir;
  return [
    `--service-cluster-ip-range=${c.serviceCidr}`,
    '--authorization-mode=Node,RBAC',
    '--enable-admission-plugins=NodeRestriction',
    `--kubelet-client-certificate=${join(d, 'kubelet-client.crt')}`,
    `--kubelet-client-key=${join(d, 'kubelet-client.key')}`,
    `--kubelet-certificate-authority=${join(d, 'ca.crt')}`,
    '--kubelet-preferred-address-types=InternalIP',
  ];
}

function apiserverArgs(st: ApiServerState): string[] {
  const d = st.dir;
  const common = [
    `--etcd-servers=http://127.0.0.1:${st.etcdPort}`,
    `--bind-address=${st.host}`,
    `--advertise-address=${st.host}`,
    `--secure-port=${st.port}`,
    `--tls-cert-file=${join(d, 'apiserver.crt')}`,
    `--tls-private-key-file=${join(d, 'apiserver.key')}`,
    `--client-ca-file=${join(d, 'ca.crt')}`,
    `--token-auth-file=${join(d, 'tokens.csv')}`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${join(d, 'sa.pub')}`,
    `--service-account-signing-key-file=${join(d, 'sa.key')}`,
    '--allow-privileged=true',
    '--enable-priority-and-fairness=false',
    '--profiling=false',
    '--v=0',
  ];
  // A real cluster: the endpoint reconciler keeps the `kubernetes` Service's endpoints on --advertise-address.
  if (st.cluster) return [...common, ...clusterArgs(st, st.cluster)];
  return [
    ...common,
    '--authorization-mode=RBAC',
    '--service-cluster-ip-range=10.0.0.0/24',
    // No controller-manager creates "default" ServiceAccounts here, so the admission plugin that requires them is off.
    '--disable-admission-plugins=ServiceAccount',
    '--endpoint-reconciler-type=none',
  ];
}

async function startEtcd(st: ApiServerState, bin: ApiServerBinaries): Promise<number> {
  const peer = await freePort();
  const pid = startDaemon(
    bin.etcd,
    [
      '--name=testbed',
      `--data-dir=${join(st.dir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${st.etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${st.etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-cluster=testbed=http://127.0.0.1:${peer}`,
      '--log-level=warn',
    ],
    join(st.dir, 'etcd.log'),
  );
  await waitFor('etcd to answer', 30_000, async () => {
    if (!isAlive(pid)) throw new Error(`etcd exited: ${tailOf(join(st.dir, 'etcd.log'), 10)}`);
    const res = await fetch(`http://127.0.0.1:${st.etcdPort}/health`).catch(() => undefined);
    return res?.ok ? true : undefined;
  });
  return pid;
}

async function startApiserverProcess(st: ApiServerState, bin: ApiServerBinaries): Promise<number> {
  const log = join(st.dir, 'kube-apiserver.log');
  const pid = startDaemon(bin.apiserver, apiserverArgs(st), log);
  await waitFor('kube-apiserver /readyz', 90_000, async () => {
    if (!isAlive(pid)) throw new Error(`kube-apiserver exited: ${tailOf(log, 15)}`);
    return (await isReady({ ...st, apiserverPid: pid })) ? true : undefined;
  });
  return pid;
}

/**
 * Starts etcd and kube-apiserver with state under `dir`. `host` is the loopback address to serve on.
 * Returns the state needed to reach and stop them.
 */
export async function startApiServer(opts: {
  dir: string;
  host?: string;
  binaries?: ApiServerBinaries;
  cluster?: ClusterApiOptions;
}): Promise<ApiServerState> {
  const bin = opts.binaries ?? binariesFromEnv();
  const host = opts.host ?? '127.0.0.1';
  mkdirSync(opts.dir, { recursive: true });
  await makeCerts(opts.dir, host, opts.cluster);
  const adminToken = randomBytes(24).toString('hex');
  const tokens: Record<string, string> = {};
  const lines = [`${adminToken},admin,admin-uid,"system:masters"`];
  for (const u of opts.cluster?.users ?? []) {
    tokens[u.name] = randomBytes(24).toString('hex');
    lines.push(`${tokens[u.name]},${u.name},${u.name},"${u.groups.join(',')}"`);
  }
  writeFileSync(join(opts.dir, 'tokens.csv'), `${lines.join('\n')}\n`, { mode: 0o600 });
  const port = opts.cluster?.port ?? (await freePort(host));
  const st: ApiServerState = {
    ...(opts.cluster ? { cluster: opts.cluster, tokens } : {}),
    dir: opts.dir,
    host,
    port,
    url: `https://${host}:${port}`,
    etcdPort: await freePort(),
    etcdPid: 0,
    apiserverPid: 0,
    kubeconfigPath: join(opts.dir, 'kubeconfig'),
    adminToken,
    caFile: join(opts.dir, 'ca.crt'),
  };
  try {
    st.etcdPid = await startEtcd(st, bin);
    st.apiserverPid = await startApiserverProcess(st, bin);
  } catch (err) {
    await stopApiServer(st);
    throw err;
  }
  writeFileSync(st.kubeconfigPath, kubeconfig(st.url, st.caFile, adminToken), { mode: 0o600 });
  return st;
}

/** Stops kube-apiserver only (etcd keeps the data), then starts it again on the same address. */
export async function restartApiServer(st: ApiServerState, opts: { downMs?: number; binaries?: ApiServerBinaries } = {}): Promise<void> {
  const bin = opts.binaries ?? binariesFromEnv();
  await stopDaemon(st.apiserverPid);
  if (opts.downMs) await new Promise((r) => setTimeout(r, opts.downMs));
  st.apiserverPid = await startApiserverProcess(st, bin);
}

/** Stops kube-apiserver and etcd. The data folder stays; remove `st.dir` to discard it. */
export async function stopApiServer(st: ApiServerState): Promise<void> {
  if (st.apiserverPid) await stopDaemon(st.apiserverPid);
  if (st.etcdPid) await stopDaemon(st.etcdPid);
}
