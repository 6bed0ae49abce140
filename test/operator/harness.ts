// Starts the operator on a test bed: two agent processes on distinct loopback addresses (one per fake node,
// with Node and agent Pod objects on the API server), and the real controller process. Used by the
// end-to-end tests in test/operator/ and by hack/demo.ts.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import { execa } from 'execa';
import { kube, testbed, type Testbed } from '../../testbed/index.ts';
import { ROOT } from '../../testbed/paths.ts';

export const REPO = ROOT;
export const CONTROLLER_SA = 'migprobe-controller';
export const AGENT_SA = 'migprobe-agent';

export interface ManagedProcess {
  name: string;
  logFile: string;
  readonly pid: number | undefined;
  readonly child: ChildProcess | undefined;
  /** Exit code of the last run (null while running or when killed by a signal). */
  readonly exitCode: number | null | undefined;
  start(): Promise<void>;
  /** Sends `signal` and waits for the exit (SIGKILL after `graceMs`). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
  log(): string;
}

export interface AgentHandle {
  node: string;
  ip: string;
  url: string;
  workDir: string;
  /** The agent's --checkpoint-dir (RestoreOnly probes read checkpoints only from below it). */
  checkpointDir: string;
  proc: ManagedProcess;
}

export interface Operator {
  kc: k8s.KubeConfig;
  namespace: string;
  agentNamespace: string;
  nodes: [string, string];
  agents: [AgentHandle, AgentHandle];
  controller: ManagedProcess;
  kubectl(args: string[], opts?: { input?: string; reject?: boolean }): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  /** The agents' CA (PEM) when they serve HTTPS. */
  agentCa: string | undefined;
  /** GET on an agent (HTTPS with the test CA when on); resolves the HTTP status. */
  agentGet(agent: AgentHandle, path: string, token?: string): Promise<number>;
  stop(): Promise<void>;
}

export interface StartOperatorOptions {
  tb: Testbed;
  /** Namespace for the probes and workload pods (created; the controller watches only it). */
  namespace: string;
  /** Node names; default `<prefix>-a`, `<prefix>-b`. */
  nodes?: [string, string];
  maxDumpsPerNode?: number;
  agentGraceSeconds?: number;
  /** Another API server (its kubeconfig), e.g. a private one the test restarts. */
  kubeconfigPath?: string;
  /** Extra controller flags. */
  controllerArgs?: string[];
  /** Serve the agent API over HTTPS with a test CA (default true). */
  tls?: boolean;
  /** Namespace of the agent pods and ServiceAccounts; default `<namespace>-sys` (a namespace cannot be reused
   * once deleted here: with no namespace controller it stays Terminating). */
  agentNamespace?: string;
  /** Extra agent flags (both agents), e.g. `--facts-interval 2s`. */
  agentArgs?: string[];
}

function managed(name: string, logDir: string, args: () => string[], env: Record<string, string>): ManagedProcess {
  const logFile = join(logDir, `${name}.log`);
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  return {
    name,
    logFile,
    get pid() {
      return child?.pid;
    },
    get child() {
      return child;
    },
    get exitCode() {
      return child?.exitCode;
    },
    async start() {
      const out = createWriteStream(logFile, { flags: 'a' });
      await new Promise<void>((r) => out.once('open', () => r()));
      const c = spawn(process.execPath, args(), { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', out, out] });
      child = c;
      exited = new Promise<void>((r) => c.once('exit', () => r()));
    },
    async stop(signal = 'SIGTERM', graceMs = 10_000) {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      c.kill(signal);
      const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
    log() {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
  };
}

async function portFreeOn(hosts: string[], port: number): Promise<boolean> {
  for (const host of hosts) {
    const ok = await new Promise<boolean>((r) => {
      const s = createServer();
      s.once('error', () => r(false));
      s.listen(port, host, () => s.close(() => r(true)));
    });
    if (!ok) return false;
  }
  return true;
}

/** GET `url` (https with `ca` and the agents' server name), resolving the status code. */
export function httpGetStatus(url: string, ca?: string, headers: Record<string, string> = {}): Promise<number> {
  const u = new URL(url);
  const fn = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const r = fn(u, { headers, signal: AbortSignal.timeout(5000), ...(u.protocol === 'https:' ? { ca, servername: 'migprobe-agent' } : {}) }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    r.on('error', reject);
    r.end();
  });
}

/** A throwaway CA and one serving certificate for every agent, named `migprobe-agent`. */
async function makeAgentCerts(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const p = (n: string): string => join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await execa('openssl', ['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=migprobe-test-agent-ca']);
  await execa('openssl', ['req', ...ec, '-keyout', p('agent.key'), '-out', p('agent.csr'), '-subj', '/CN=migprobe-agent']);
  writeFileSync(p('ext.cnf'), 'subjectAltName=DNS:migprobe-agent\nextendedKeyUsage=serverAuth\n');
  await execa('openssl', ['x509', '-req', '-in', p('agent.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('agent.crt'), '-days', '2', '-extfile', p('ext.cnf')]);
  return { ca: p('ca.crt'), cert: p('agent.crt'), key: p('agent.key') };
}

async function waitHttp(url: string, timeoutMs: number, proc: ManagedProcess, ca?: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await httpGetStatus(url, ca)) === 200) return;
    } catch {
      // not yet
    }
    if (proc.child && proc.child.exitCode !== null) throw new Error(`${proc.name} exited: ${proc.log().slice(-2000)}`);
    if (Date.now() > end) throw new Error(`${url} did not answer within ${timeoutMs} ms; log: ${proc.log().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function ignoreConflict(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (e) {
    const code = (e as { code?: number }).code;
    if (code !== 409) throw e;
  }
}

export async function ensureCrd(tb: Testbed, kubeconfigPath = tb.kubeconfigPath): Promise<void> {
  // Every CRD the chart ships (crds/), each waited for until Established.
  const dir = join(REPO, 'crds');
  const names = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => `crd/${/^([^_]+)_(.+)\.yaml$/.exec(f)?.slice(1).reverse().join('.') ?? f}`);
  await execa(tb.kubectl, ['--kubeconfig', kubeconfigPath, 'apply', '--server-side', '--force-conflicts', '--field-manager=migprobe-tests', '-f', dir]);
  await execa(tb.kubectl, ['--kubeconfig', kubeconfigPath, 'wait', '--for=condition=Established', '--timeout=30s', ...names]);
}

export async function startOperator(o: StartOperatorOptions): Promise<Operator> {
  const tb = o.tb;
  const kubeconfigPath = o.kubeconfigPath ?? tb.kubeconfigPath;
  const kc = kube.client({ kubeconfigPath });
  const prefix = `mp${randomBytes(3).toString('hex')}`;
  const nodes: [string, string] = o.nodes ?? [`${prefix}-a`, `${prefix}-b`];
  const ips: [string, string] = ['127.0.0.2', '127.0.0.3'];
  const logDir = mkdtempSync(join(tmpdir(), 'migprobe-operator-'));
  const AGENT_NS = o.agentNamespace ?? `${o.namespace}-sys`;
  const cleanups: (() => Promise<void>)[] = [];
  const controllerRef: { current?: ManagedProcess } = {};
  // Cleanups run in reverse: the log folder goes last.
  cleanups.push(() => rm(logDir, { recursive: true, force: true }).then(() => undefined));
  const stop = async (): Promise<void> => {
    // Probes first, while the controller still runs their finalizer; strip what is left after that.
    const controllerUp = controllerRef.current?.child !== undefined && controllerRef.current.child.exitCode === null && controllerRef.current.child.signalCode === null;
    await execa(tb.kubectl, ['--kubeconfig', kubeconfigPath, 'delete', 'migrationprobes', '--all', '-n', o.namespace, ...(controllerUp ? ['--timeout=60s'] : ['--wait=false'])], { reject: false });
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    const left = await execa(tb.kubectl, ['--kubeconfig', kubeconfigPath, 'get', 'migrationprobes', '-n', o.namespace, '-o', 'name'], { reject: false });
    for (const n of String(left.stdout).split('\n').filter((x) => x !== '')) {
      await execa(tb.kubectl, ['--kubeconfig', kubeconfigPath, 'patch', '-n', o.namespace, n, '--type=merge', '-p', '{"metadata":{"finalizers":null}}'], { reject: false });
    }
  };
  try {
    await ensureCrd(tb, kubeconfigPath);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    await kube.ensureNamespace(kc, AGENT_NS);
    await kube.ensureNamespace(kc, o.namespace);
    for (const sa of [CONTROLLER_SA, AGENT_SA]) {
      await ignoreConflict(core.createNamespacedServiceAccount({ namespace: AGENT_NS, body: { metadata: { name: sa, namespace: AGENT_NS } } }));
    }
    let port = 0;
    for (let i = 0; i < 50 && port === 0; i++) {
      const p = 20000 + Math.floor(Math.random() * 20000);
      if (await portFreeOn(ips, p)) port = p;
    }
    if (port === 0) throw new Error('no free agent port on 127.0.0.2/127.0.0.3');

    const tls = o.tls === false ? undefined : await makeAgentCerts(logDir);
    const caPem = tls ? readFileSync(tls.ca, 'utf8') : undefined;
    const scheme = tls ? 'https' : 'http';
    const env = { MIGPROBE_CRIU: tb.criu, MIGPROBE_LOG_LEVEL: process.env.MIGPROBE_LOG_LEVEL ?? 'info' };
    const agents: AgentHandle[] = [];
    for (const [i, node] of nodes.entries()) {
      const ip = ips[i]!;
      await kube.createReadyNode(kc, node, ip);
      cleanups.push(async () => {
        await core.deleteNode({ name: node }).catch(() => undefined);
        // The agent published the node's MigrationNode; with no garbage collector here it would outlive the Node.
        await execa(tb.kubectl, ['--kubeconfig', kubeconfigPath, 'delete', 'migrationnode', node, '--ignore-not-found', '--wait=false'], { reject: false });
      });
      const workDir = join(logDir, `work-${node}`);
      const checkpointDir = join(logDir, `checkpoints-${node}`);
      mkdirSync(checkpointDir, { recursive: true });
      const proc = managed(`agent-${node}`, logDir, () => [
        'src/agent/main.ts',
        '--node-name', node,
        '--listen', `${ip}:${port}`,
        '--work-dir', workDir,
        '--kubeconfig', kubeconfigPath,
        '--allow-service-account', `${AGENT_NS}/${CONTROLLER_SA}`,
        '--peer-service-account', `${AGENT_NS}/${AGENT_SA}`,
        '--agent-namespace', AGENT_NS,
        '--token-service-account', `${AGENT_NS}/${AGENT_SA}`,
        '--containerd-address', tb.containerd.address,
        '--containerd-namespace', tb.containerd.namespace,
        '--checkpoint-dir', checkpointDir,
        ...(tls ? ['--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--agent-ca-file', tls.ca] : []),
        ...(o.agentArgs ?? []),
      ], env);
      cleanups.push(() => proc.stop('SIGTERM', 15_000));
      await proc.start();
      await waitHttp(`${scheme}://${ip}:${port}/healthz`, 30_000, proc, caPem);
      const podName = `migprobe-agent-${node}`;
      await kube.deletePod(kc, AGENT_NS, podName);
      await kube.createRunningPod(kc, {
        namespace: AGENT_NS,
        name: podName,
        nodeName: node,
        containerName: 'agent',
        containerId: `agent-${node}`,
        image: 'migprobe-agent:dev',
        labels: { 'app.kubernetes.io/name': 'migprobe-agent' },
        podIP: ip,
      });
      cleanups.push(() => kube.deletePod(kc, AGENT_NS, podName));
      agents.push({ node, ip, url: `${scheme}://${ip}:${port}`, workDir, checkpointDir, proc });
    }

    const controller = managed('controller', logDir, () => [
      'src/controller/main.ts',
      '--kubeconfig', kubeconfigPath,
      '--agent-namespace', AGENT_NS,
      '--agent-port', String(port),
      '--token-service-account', `${AGENT_NS}/${CONTROLLER_SA}`,
      '--metrics-bind', '127.0.0.1:0',
      '--watch-namespace', o.namespace,
      '--max-dumps-per-node', String(o.maxDumpsPerNode ?? 2),
      '--agent-grace-seconds', String(o.agentGraceSeconds ?? 10),
      ...(tls ? ['--agent-ca-file', tls.ca] : []),
      '--leader-elect',
      '--lease-namespace', AGENT_NS,
      ...(o.controllerArgs ?? []),
    ], env);
    controllerRef.current = controller;
    cleanups.push(() => controller.stop('SIGTERM', 25_000));
    await controller.start();

    const kubectl: Operator['kubectl'] = async (args, opts = {}) => {
      const r = await execa(tb.kubectl, ['--kubeconfig', kubeconfigPath, ...args], { reject: opts.reject ?? true, ...(opts.input !== undefined ? { input: opts.input } : {}) });
      return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
    };
    const agentGet: Operator['agentGet'] = (agent, path, token) => httpGetStatus(`${agent.url}${path}`, caPem, token ? { authorization: `Bearer ${token}` } : {});
    return { agentGet, agentCa: caPem, kc, namespace: o.namespace, agentNamespace: AGENT_NS, nodes, agents: [agents[0]!, agents[1]!], controller, kubectl, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * The operator for one test: a fresh namespace named `<prefix>-<random>`, started on the shared test bed and
 * stopped after the test, its namespaces deleted. `cleanup` runs first (objects the test made elsewhere).
 */
export async function withOperator(
  t: { after(fn: () => Promise<void>): void },
  prefix: string,
  extra: Omit<Partial<StartOperatorOptions>, 'tb' | 'namespace'> & { cleanup?: (op: Operator) => Promise<void> } = {},
): Promise<Operator> {
  const tb = await testbed();
  const namespace = `${prefix}-${randomBytes(3).toString('hex')}`;
  const { cleanup, ...opts } = extra;
  const op = await startOperator({ tb, namespace, ...opts });
  t.after(async () => {
    await cleanup?.(op);
    await op.stop();
    await kube.deleteNamespace(op.kc, namespace);
    await kube.deleteNamespace(op.kc, op.agentNamespace);
  });
  return op;
}
