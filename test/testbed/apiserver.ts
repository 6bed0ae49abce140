// A real Kubernetes API server for tests, the way controller-runtime's envtest runs one: etcd plus
// kube-apiserver, loopback only, RBAC on, ServiceAccount token signing (so TokenRequest and TokenReview
// work), a static admin token, and a kubeconfig written for kubectl and the tests. No kubelet, no
// controller-manager, no scheduler: tests create Node and Pod objects themselves.

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

async function makeCerts(dir: string, host: string): Promise<void> {
  if (existsSync(join(dir, 'apiserver.crt'))) return;
  const ssl = async (args: string[]): Promise<void> => {
    await run('openssl', args, { timeoutMs: 30_000 });
  };
  await ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt'),
    '-subj', '/CN=migprobe-testbed-ca', '-days', '3650']);
  await ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'apiserver.key'), '-out', join(dir, 'apiserver.csr'),
    '-subj', '/CN=kube-apiserver']);
  writeFileSync(join(dir, 'san.cnf'), `subjectAltName=IP:${host},IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n`);
  await ssl(['x509', '-req', '-in', join(dir, 'apiserver.csr'), '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'),
    '-CAcreateserial', '-out', join(dir, 'apiserver.crt'), '-days', '3650', '-extfile', join(dir, 'san.cnf')]);
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
}

function kubeconfig(url: string, caFile: string, token: string): string {
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

function apiserverArgs(st: ApiServerState): string[] {
  const d = st.dir;
  return [
    `--etcd-servers=http://127.0.0.1:${st.etcdPort}`,
    `--bind-address=${st.host}`,
    `--advertise-address=${st.host}`,
    `--secure-port=${st.port}`,
    `--tls-cert-file=${join(d, 'apiserver.crt')}`,
    `--tls-private-key-file=${join(d, 'apiserver.key')}`,
    `--client-ca-file=${join(d, 'ca.crt')}`,
    `--token-auth-file=${join(d, 'tokens.csv')}`,
    '--authorization-mode=RBAC',
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${join(d, 'sa.pub')}`,
    `--service-account-signing-key-file=${join(d, 'sa.key')}`,
    '--service-cluster-ip-range=10.0.0.0/24',
    '--allow-privileged=true',
    // No controller-manager creates "default" ServiceAccounts here, so the admission plugin that requires them is off.
    '--disable-admission-plugins=ServiceAccount',
    '--enable-priority-and-fairness=false',
    '--profiling=false',
    '--endpoint-reconciler-type=none',
    '--v=0',
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
export async function startApiServer(opts: { dir: string; host?: string; binaries?: ApiServerBinaries }): Promise<ApiServerState> {
  const bin = opts.binaries ?? binariesFromEnv();
  const host = opts.host ?? '127.0.0.1';
  mkdirSync(opts.dir, { recursive: true });
  await makeCerts(opts.dir, host);
  const adminToken = randomBytes(24).toString('hex');
  writeFileSync(join(opts.dir, 'tokens.csv'), `${adminToken},admin,admin-uid,"system:masters"\n`, { mode: 0o600 });
  const port = await freePort(host);
  const st: ApiServerState = {
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
