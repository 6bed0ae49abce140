// An agent server in the test process, wired to the test bed as main.ts wires it (TokenReview and pod lookups
// against the test bed's kube-apiserver, the real engine on its containerd and CRIU), with a ServiceAccount to
// call it as and real TokenRequest tokens. The agent's HTTP limits can be set small; the TokenReviews it asks
// are counted. Used by the agent's hardening and race tests.

import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { execa } from 'execa';
import { realClock } from '../../src/kube/clock.ts';
import { nullLogger } from '../../src/kube/logger.ts';
import { loadKubeConfig } from '../../src/kube/client.ts';
import { Authenticator, type AuthLimits } from '../../src/agent-api/auth.ts';
import { AgentClient } from '../../src/agent-api/client.ts';
import type { AgentConfig, AgentEngine, PodLookup } from '../../src/agent/deps.ts';
import { loadEngine } from '../../src/agent/engine.ts';
import { kubeTokenRequester, kubeTokenReviewer } from '../../src/agent-api/kubeauth.ts';
import { kubeAgentPodLister, kubeNamespaceLookup, kubePodLookup, kubeProbeLookup } from '../../src/agent/kube-lookups.ts';
import { AGENT_AUDIENCE } from '../../src/agent-api/protocol.ts';
import { AgentServer, type HttpLimits } from '../../src/agent/server.ts';
import { kube, testbed, type Testbed } from '../../testbed/index.ts';
import { ensureCrd } from '../operator/harness.ts';

export interface BedAgent {
  tb: Testbed;
  kc: k8s.KubeConfig;
  url: string;
  host: string;
  port: number;
  nodeName: string;
  namespace: string;
  workRoot: string;
  server: AgentServer;
  auth: Authenticator;
  /** TokenReviews the agent sent to the API server. */
  reviews(): number;
  /** A fresh TokenRequest token of the allowed ServiceAccount (audience migprobe-agent unless given). */
  token(audiences?: string[]): Promise<string>;
  /** A token of a ServiceAccount that exists but is not on the agent's allow-list. */
  strangerToken(): Promise<string>;
  /** Where the agent looks for peer agents' pods (its `namespace`); a test may set the port they listen on. */
  peers: AgentConfig['peers'];
}

export async function startBedAgent(
  t: TestContext,
  o: {
    http?: Partial<HttpLimits>;
    auth?: Partial<AuthLimits>;
    engine?: (real: AgentEngine) => AgentEngine;
    pods?: (real: PodLookup) => PodLookup;
    /** More of the agent's configuration (caps, say). */
    config?: Partial<AgentConfig>;
  } = {},
): Promise<BedAgent> {
  const tb = await testbed();
  const kc = loadKubeConfig({ kubeconfig: tb.kubeconfigPath });
  const id = randomBytes(3).toString('hex');
  const namespace = `agent-${id}`;
  const nodeName = `agenthttp-${id}-a`;
  await ensureCrd(tb);
  await kube.ensureNamespace(kc, namespace);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  for (const sa of ['caller', 'stranger']) await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: sa, namespace } } });
  t.after(async () => {
    for (const sa of ['caller', 'stranger']) await core.deleteNamespacedServiceAccount({ name: sa, namespace }).catch(() => undefined);
  });
  const workRoot = await mkdtemp(join(tmpdir(), 'agenthttp-work-'));
  const realReview = kubeTokenReviewer(kc);
  let reviews = 0;
  const auth = new Authenticator({
    allowedUsers: [`system:serviceaccount:${namespace}:caller`],
    review: async (token, aud) => {
      reviews++;
      return await realReview(token, aud);
    },
    clock: realClock,
    ...(o.auth ? { limits: o.auth } : {}),
  });
  const engine = await loadEngine();
  const requestCaller = kubeTokenRequester(kc, `${namespace}/caller`);
  const requestStranger = kubeTokenRequester(kc, `${namespace}/stranger`);
  // The one ServiceAccount calls both as the controller and as a peer agent (the HTTP limits are the subject here).
  const caller = `system:serviceaccount:${namespace}:caller`;
  const peers: AgentConfig['peers'] = { namespace, scheme: 'http', defaultPort: 1 };
  const server = new AgentServer({
    config: {
      nodeName,
      workRoot,
      criu: tb.criu,
      containerd: { namespace: tb.containerd.namespace, address: tb.containerd.address },
      maxBundleBytes: 64 * 1024 * 1024,
      maxConcurrentDumps: 4,
      maxConcurrentRestores: 2,
      retainFinishedMs: 60_000,
      ...(o.http ? { http: o.http } : {}),
      callers: { controllers: [caller], peers: [caller] },
      peers,
      ...o.config,
    },
    engine: o.engine ? o.engine(engine) : engine,
    auth,
    pods: o.pods ? o.pods(kubePodLookup(kc)) : kubePodLookup(kc),
    probes: kubeProbeLookup(kc),
    agentPods: kubeAgentPodLister(kc, namespace),
    namespaces: kubeNamespaceLookup(kc),
    peer: new AgentClient({ tokens: { token: async () => (await requestCaller([AGENT_AUDIENCE], 600)).token } }),
    run: async (file, args, ro) => {
      await execa(file, args, { timeout: ro.timeoutMs, stdin: 'ignore' });
    },
    clock: realClock,
    log: nullLogger(),
  });
  await server.sweepWorkRoot();
  const host = '127.0.0.1';
  const addr = await server.listen(host, 0);
  t.after(async () => {
    await server.close(15_000);
    await rm(workRoot, { recursive: true, force: true });
  });
  return {
    tb,
    kc,
    url: `http://${host}:${addr.port}`,
    host,
    port: addr.port,
    nodeName,
    namespace,
    workRoot,
    server,
    auth,
    reviews: () => reviews,
    token: async (audiences = [AGENT_AUDIENCE]) => (await requestCaller(audiences, 600)).token,
    strangerToken: async () => (await requestStranger([AGENT_AUDIENCE], 600)).token,
    peers,
  };
}

/** What is left in the agent's work folder (should be nothing once its operations are gone). */
export async function workLeft(a: BedAgent): Promise<string[]> {
  return await readdir(a.workRoot);
}
