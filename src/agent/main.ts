// migprobe-agent: one per node. Thin: flags/env, wiring, signals. See server.ts.
//
//   node src/agent/main.ts --node-name node-a --listen 127.0.0.2:9443 --work-dir /var/lib/migprobe/agent \
//     [--max-bundle-bytes N] [--max-unpacked-bytes N] [--max-bundle-entries N] \
//     --allow-service-account migprobe-system/migprobe-controller --peer-service-account migprobe-system/migprobe-agent \
//     [--token-service-account migprobe-system/migprobe-agent | --token-file /var/run/secrets/migprobe/token] \
//     [--agent-namespace NS (else POD_NAMESPACE)] [--kubeconfig F] [--containerd-address SOCK] [--containerd-namespace k8s.io] [--checkpoint-dir DIR]
//     [--tls-cert-file F --tls-key-file F] [--agent-ca-file F] [--agent-server-name migprobe-agent]
//     [--http-headers-timeout-seconds 10] [--http-request-timeout-seconds 600] [--http-body-idle-timeout-seconds 30]
//     [--http-keepalive-timeout-seconds 5] [--http-max-connections 128]
//     [--token-cache-size 4096] [--token-cache-ttl-seconds 30] [--token-reviews-per-second 5] [--token-review-burst 20]
//     [--facts-interval 10m]   (how often this node's MigrationNode is re-published; nodefacts-publisher.ts)

import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { loadKubeConfig } from '../kube/client.ts';
import { realClock } from '../kube/clock.ts';
import { createLogger } from '../kube/logger.ts';
import { Authenticator, DEFAULT_AUTH_LIMITS, fileTokenSource, requestedTokenSource, serviceAccountUser, type AuthLimits, type TokenSource } from '../agent-api/auth.ts';
import { AgentClient } from '../agent-api/client.ts';
import { kubeTokenRequester, kubeTokenReviewer } from '../agent-api/kubeauth.ts';
import { kubeAgentPodLister, kubeNamespaceLookup, kubePodLookup, kubeProbeLookup } from './kube-lookups.ts';
import { AgentServer, DEFAULT_HTTP_LIMITS, type HttpLimits } from './server.ts';
import { isProbeUid } from '../agent-api/protocol.ts';
import { BUNDLE_MAX_ENTRIES, BUNDLE_MAX_UNPACKED_BYTES } from './extract.ts';
import { loadEngine, recoverFrozen } from './engine.ts';
import { criuTooOld, resolveCriu } from '../engine/index.ts';
import { runtimeSocketProblem } from '../engine/index.ts';
import { migprobeVersion } from '../version.ts';
import { kubeMigrationNodeApi } from './kube-migrationnode.ts';
import { NodeFactsPublisher } from './nodefacts-publisher.ts';
import { DEFAULT_FACTS_INTERVAL, factsIntervalMs } from './nodefacts.ts';

const { values } = parseArgs({
  options: {
    'node-name': { type: 'string', default: process.env.NODE_NAME ?? '' },
    listen: { type: 'string', default: process.env.MIGPROBE_AGENT_LISTEN ?? '0.0.0.0:9443' },
    'work-dir': { type: 'string', default: process.env.MIGPROBE_AGENT_WORK_DIR ?? '/var/lib/migprobe/agent' },
    kubeconfig: { type: 'string' },
    // The controller: may start, read and delete probes.
    'allow-service-account': { type: 'string', multiple: true, default: [] },
    // Peer agents: may call restore-check, nothing else.
    'peer-service-account': { type: 'string', multiple: true, default: [] },
    // Where peer agents' pods are (this agent's own namespace).
    'agent-namespace': { type: 'string', default: process.env.POD_NAMESPACE ?? '' },
    'token-service-account': { type: 'string' },
    'token-file': { type: 'string' },
    'containerd-address': { type: 'string', default: process.env.CONTAINERD_ADDRESS ?? '/run/containerd/containerd.sock' },
    'containerd-namespace': { type: 'string', default: 'k8s.io' },
    'checkpoint-dir': { type: 'string' },
    'max-bundle-bytes': { type: 'string', default: String(256 * 1024 * 1024) },
    'max-unpacked-bytes': { type: 'string', default: String(BUNDLE_MAX_UNPACKED_BYTES) },
    'max-bundle-entries': { type: 'string', default: String(BUNDLE_MAX_ENTRIES) },
    'max-concurrent-dumps': { type: 'string', default: '2' },
    'max-concurrent-restores': { type: 'string', default: '2' },
    'tls-cert-file': { type: 'string' },
    'tls-key-file': { type: 'string' },
    'agent-ca-file': { type: 'string' },
    'agent-server-name': { type: 'string', default: 'migprobe-agent' },
    // The HTTP server's own bounds (server.ts HttpLimits) and the token cache / TokenReview limit (auth.ts).
    'http-headers-timeout-seconds': { type: 'string', default: String(DEFAULT_HTTP_LIMITS.headersTimeoutMs / 1000) },
    'http-request-timeout-seconds': { type: 'string', default: String(DEFAULT_HTTP_LIMITS.requestTimeoutMs / 1000) },
    'http-body-idle-timeout-seconds': { type: 'string', default: String(DEFAULT_HTTP_LIMITS.bodyIdleTimeoutMs / 1000) },
    'http-keepalive-timeout-seconds': { type: 'string', default: String(DEFAULT_HTTP_LIMITS.keepAliveTimeoutMs / 1000) },
    'http-max-connections': { type: 'string', default: String(DEFAULT_HTTP_LIMITS.maxConnections) },
    'token-cache-size': { type: 'string', default: String(DEFAULT_AUTH_LIMITS.cacheEntries) },
    'token-cache-ttl-seconds': { type: 'string', default: String(DEFAULT_AUTH_LIMITS.cacheTtlMs / 1000) },
    'token-reviews-per-second': { type: 'string', default: String(DEFAULT_AUTH_LIMITS.reviewsPerSecond) },
    'token-review-burst': { type: 'string', default: String(DEFAULT_AUTH_LIMITS.reviewBurst) },
    // How often this node's MigrationNode (its facts) is re-published; also retried with backoff after a failure.
    'facts-interval': { type: 'string', default: DEFAULT_FACTS_INTERVAL },
  },
  strict: true,
});

const log = createLogger({ component: 'agent', fields: { node: values['node-name'] } });

/** A positive number flag (`--name`), or an error naming the flag. */
function positive(name: keyof typeof values, integer = false): number {
  const raw = String(values[name] ?? '');
  const n = Number(raw);
  if (raw === '' || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new Error(`--${name} must be a positive ${integer ? 'integer' : 'number'}, not '${raw}'`);
  return n;
}

async function main(): Promise<void> {
  const nodeName = values['node-name'] ?? '';
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(nodeName)) throw new Error('--node-name (or NODE_NAME) is required');
  const m = /^(.*):(\d+)$/.exec(values.listen ?? '');
  if (!m) throw new Error('--listen must be host:port');
  const allowed = (values['allow-service-account'] ?? []).map(serviceAccountUser);
  if (allowed.length === 0) throw new Error('at least one --allow-service-account is required');
  const kc = loadKubeConfig(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {});
  let tokens: TokenSource;
  if (values['token-file'] !== undefined) tokens = fileTokenSource(values['token-file'], realClock);
  else if (values['token-service-account'] !== undefined) tokens = requestedTokenSource(kubeTokenRequester(kc, values['token-service-account']), realClock);
  else throw new Error('--token-file or --token-service-account is required (the agent calls peer agents)');
  const http: HttpLimits = {
    ...DEFAULT_HTTP_LIMITS,
    headersTimeoutMs: positive('http-headers-timeout-seconds') * 1000,
    requestTimeoutMs: positive('http-request-timeout-seconds') * 1000,
    bodyIdleTimeoutMs: positive('http-body-idle-timeout-seconds') * 1000,
    keepAliveTimeoutMs: positive('http-keepalive-timeout-seconds') * 1000,
    maxConnections: positive('http-max-connections', true),
  };
  const authLimits: AuthLimits = {
    cacheEntries: positive('token-cache-size', true),
    cacheTtlMs: positive('token-cache-ttl-seconds') * 1000,
    reviewsPerSecond: positive('token-reviews-per-second'),
    reviewBurst: positive('token-review-burst', true),
  };
  const workRoot = values['work-dir'] ?? '/var/lib/migprobe/agent';
  if (!workRoot.startsWith('/')) throw new Error(`--work-dir (or MIGPROBE_AGENT_WORK_DIR) must be an absolute path, got ${JSON.stringify(workRoot)}`);
  const maxUnpackedBytes = positive('max-unpacked-bytes', true);
  const maxBundleEntries = positive('max-bundle-entries', true);
  const factsInterval = factsIntervalMs(values['facts-interval'] ?? DEFAULT_FACTS_INTERVAL);
  // MIGPROBE_CRIU (else `criu` on PATH); refuse to serve with a CRIU that cannot do the checks.
  const { path: criu, version: criuVersion } = await resolveCriu();
  const tooOld = criuTooOld(criuVersion);
  if (tooOld !== undefined) throw new Error(`${tooOld.message} (${criu}): ${tooOld.hint}`);
  log.info('CRIU', { path: criu, version: criuVersion });

  // A previous run may have died mid-dump: thaw whatever it left frozen before anything else.
  // Only markers in the source operations' own folders (<work-dir>/<probe UID>/), never in a target's (received) one.
  const recovered = await recoverFrozen(workRoot, isProbeUid);
  for (const r of recovered) {
    if (r.actions[0]?.startsWith('ignored:') === true) log.warn('ignored a freeze marker migprobe did not write', { marker: r.marker, why: r.actions[0] });
    else log.warn('thawed a workload left frozen by a previous run', { marker: r.marker, actions: r.actions });
  }
  // Every dump and image lookup dials containerd: a socket that is not there is a configuration error, said now
  // (after the recovery above, which needs no containerd).
  const address = values['containerd-address'] ?? '';
  const socketProblem = runtimeSocketProblem(address);
  if (socketProblem !== undefined) {
    throw new Error(`--containerd-address ${address}: no containerd socket there (${socketProblem}); set it (or CONTAINERD_ADDRESS) to this node's containerd socket`);
  }
  const peers = (values['peer-service-account'] ?? []).map(serviceAccountUser);
  if (peers.length === 0) throw new Error('at least one --peer-service-account is required (the agents\' own ServiceAccount: the only caller of restore-check)');
  const both = peers.filter((u) => allowed.includes(u));
  if (both.length > 0) throw new Error(`${both.join(', ')} is given both as --allow-service-account and --peer-service-account: the controller and peer agents must be different ServiceAccounts`);
  const agentNamespace = values['agent-namespace'] || saNamespace();
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(agentNamespace)) throw new Error('--agent-namespace (or POD_NAMESPACE) is required: peer agents\' pods are found there');

  const certFile = values['tls-cert-file'];
  const keyFile = values['tls-key-file'];
  if ((certFile === undefined) !== (keyFile === undefined)) throw new Error('--tls-cert-file and --tls-key-file go together');
  const tls = certFile !== undefined && keyFile !== undefined ? { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') } : undefined;
  const engine = await loadEngine();
  const server = new AgentServer({
    config: {
      nodeName,
      workRoot,
      criu,
      containerd: { namespace: values['containerd-namespace'] ?? 'k8s.io', ...(address ? { address } : {}) },
      ...(values['checkpoint-dir'] !== undefined ? { checkpointDir: values['checkpoint-dir'] } : {}),
      maxBundleBytes: Number(values['max-bundle-bytes']),
      maxUnpackedBytes,
      maxBundleEntries,
      maxConcurrentDumps: Number(values['max-concurrent-dumps']),
      maxConcurrentRestores: Number(values['max-concurrent-restores']),
      retainFinishedMs: 15 * 60_000,
      http,
      callers: { controllers: allowed, peers },
      // TLS on: peers are reached over https only (and our token never crosses plain HTTP).
      peers: { namespace: agentNamespace, scheme: tls ? 'https' : 'http', defaultPort: Number(m[2]) },
    },
    engine,
    auth: new Authenticator({ allowedUsers: [...allowed, ...peers], review: kubeTokenReviewer(kc), clock: realClock, limits: authLimits }),
    pods: kubePodLookup(kc),
    probes: kubeProbeLookup(kc),
    agentPods: kubeAgentPodLister(kc, agentNamespace),
    namespaces: kubeNamespaceLookup(kc),
    peer: new AgentClient({
      tokens,
      requireTls: tls !== undefined,
      serverName: values['agent-server-name'] ?? 'migprobe-agent',
      ...(values['agent-ca-file'] !== undefined ? { ca: readFileSync(values['agent-ca-file'], 'utf8') } : {}),
    }),
    run: async (file, args, o) => {
      await execa(file, args, { timeout: o.timeoutMs, stdin: 'ignore' });
    },
    clock: realClock,
    log,
  });
  const swept = await server.sweepWorkRoot();
  if (swept.length > 0) log.info('removed leftovers of a previous run', { entries: swept });
  const addr = await server.listen(m[1] ?? '0.0.0.0', Number(m[2]), tls);
  log.info('agent listening', { address: addr.address, port: addr.port, tls: tls !== undefined, workRoot, criu });
  // This node's facts as a MigrationNode, now and every --facts-interval (failures are logged and retried).
  const publisher = new NodeFactsPublisher({
    nodeName,
    agentVersion: await migprobeVersion(),
    intervalMs: factsInterval,
    measure: () => engine.collectNodeFacts(criu),
    api: kubeMigrationNodeApi(kc),
    clock: realClock,
    log,
  });
  publisher.start();

  let stopping = false;
  const stop = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal: sig });
    publisher
      .stop()
      .then(() => server.close(30_000))
      .then(() => process.exit(0))
      .catch((e: unknown) => {
        log.error('shutdown failed', { error: (e as Error).message });
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** The namespace of the pod's ServiceAccount token, when the agent runs in a pod without POD_NAMESPACE. */
function saNamespace(): string {
  const f = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';
  return existsSync(f) ? readFileSync(f, 'utf8').trim() : '';
}

main().catch((e: unknown) => {
  log.error('agent failed to start', { error: (e as Error).message });
  process.exitCode = 1;
});
