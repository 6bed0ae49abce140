// migprobe-controller. Thin: flags/env, informers, work queues, leader election, metrics, graceful shutdown.
// Two controllers in one process under one Lease: MigrationProbes (reconcile.ts, phases.ts) and
// MigrationReadinesses (readiness/), each with its own work queue, sharing the informers they both read.
//
//   node src/controller/main.ts [--kubeconfig F] [--agent-namespace migprobe-system] [--agent-port 9443]
//     [--max-dumps-per-node 2] [--token-service-account ns/name | --token-file F] [--metrics-bind 127.0.0.1:8080]
//     [--agent-ca-file F] [--agent-server-name migprobe-agent] [--agent-scheme http|https]
//     [--leader-elect] [--lease-namespace NS] [--lease-name migprobe-controller] [--workers 2] [--watch-namespace NS]

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { hostname } from 'node:os';
import type { KubernetesObject, V1Namespace, V1Node, V1Pod, V1ReplicaSet } from '@kubernetes/client-node';
import { MIGRATION_NODE_PLURAL, type MigrationNode } from '../api/migrationnode.ts';
import { READINESS_PLURAL, type MigrationReadiness } from '../api/readiness.ts';
import { GROUP, PLURAL, VERSION, type MigrationProbe } from '../api/v1alpha1.ts';
import { AgentClient } from '../agent-api/client.ts';
import { fileTokenSource, requestedTokenSource, type TokenSource } from '../agent-api/auth.ts';
import { kubeTokenRequester } from '../agent-api/kubeauth.ts';
import { loadKubeConfig } from '../kube/client.ts';
import { realClock } from '../kube/clock.ts';
import { Controller } from '../kube/controller.ts';
import { Informer } from '../kube/informer.ts';
import { startLeaderElection } from '../kube/leader.ts';
import { createLogger } from '../kube/logger.ts';
import { ControllerMetrics, createRegistry, informerMetrics, startHealthServer, workQueueMetrics } from '../kube/metrics.ts';
import { WorkQueue } from '../kube/workqueue.ts';
import { EventRecorder } from '../kube/events.ts';
import { kubeProbeWriter, recorderEventSink } from './kubeio.ts';
import { probeMetrics } from './metrics.ts';
import { AGENT_LABEL, AGENT_LABEL_VALUE, ProbeReconciler } from './reconcile.ts';
import { routing } from './routing.ts';
import { kubeReadinessWriter, readinessEventSink } from './readiness/kubeio.ts';
import { readinessMetrics } from './readiness/metrics.ts';
import { ReadinessReconciler } from './readiness/reconcile.ts';
import { readinessRouting } from './readiness/routing.ts';

const { values } = parseArgs({
  options: {
    kubeconfig: { type: 'string' },
    'agent-namespace': { type: 'string', default: process.env.MIGPROBE_AGENT_NAMESPACE ?? 'migprobe-system' },
    'agent-port': { type: 'string', default: '9443' },
    'agent-scheme': { type: 'string', default: '' },
    'agent-ca-file': { type: 'string' },
    'agent-server-name': { type: 'string', default: 'migprobe-agent' },
    'max-dumps-per-node': { type: 'string', default: '2' },
    'agent-grace-seconds': { type: 'string', default: '20' },
    'poll-interval-ms': { type: 'string', default: '1000' },
    'token-service-account': { type: 'string' },
    'token-file': { type: 'string' },
    'metrics-bind': { type: 'string', default: '127.0.0.1:8080' },
    'leader-elect': { type: 'boolean', default: false },
    'lease-namespace': { type: 'string', default: process.env.POD_NAMESPACE ?? 'migprobe-system' },
    'lease-name': { type: 'string', default: 'migprobe-controller' },
    identity: { type: 'string', default: process.env.POD_NAME ?? `${hostname()}-${process.pid}` },
    workers: { type: 'string', default: '2' },
    'watch-namespace': { type: 'string', default: '' },
  },
  strict: true,
});

const log = createLogger({ component: 'controller' });

async function main(): Promise<void> {
  const kc = loadKubeConfig(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {});
  const clock = realClock;
  let tokens: TokenSource;
  if (values['token-file'] !== undefined) tokens = fileTokenSource(values['token-file'], clock);
  else if (values['token-service-account'] !== undefined) tokens = requestedTokenSource(kubeTokenRequester(kc, values['token-service-account']), clock);
  else throw new Error('--token-file or --token-service-account is required (agents authenticate the controller)');

  const registry = createRegistry();
  const agentNamespace = values['agent-namespace'] ?? 'migprobe-system';
  const queue = new WorkQueue({ name: 'migrationprobe', clock, metrics: workQueueMetrics(registry, 'migrationprobe') });
  const readinessQueue = new WorkQueue({ name: 'migrationreadiness', clock, metrics: workQueueMetrics(registry, 'migrationreadiness') });

  const mk = <T extends KubernetesObject>(name: string, path: string, labelSelector?: string): Informer<T> =>
    new Informer<T>({ name, kubeConfig: kc, path, clock, logger: log, metrics: informerMetrics(registry, name), resyncPeriodMs: 5 * 60_000, ...(labelSelector ? { labelSelector } : {}) });
  // --watch-namespace limits the controller to one namespace's probes (and pods); default: all namespaces.
  const watchNs = values['watch-namespace'] ?? '';
  const nsPath = watchNs === '' ? '' : `/namespaces/${encodeURIComponent(watchNs)}`;
  const probes = mk<MigrationProbe & KubernetesObject>('migrationprobes', `/apis/${GROUP}/${VERSION}${nsPath}/${PLURAL}`);
  const pods = mk<V1Pod>('pods', `/api/v1${nsPath}/pods`);
  const nodes = mk<V1Node>('nodes', '/api/v1/nodes');
  const agentPods = mk<V1Pod>('agent-pods', `/api/v1/namespaces/${agentNamespace}/pods`, `${AGENT_LABEL}=${AGENT_LABEL_VALUE}`);

  // Cluster-scoped readinesses and node facts; owners and namespace labels for the readiness's selection.
  const readinesses = mk<MigrationReadiness & KubernetesObject>('migrationreadinesses', `/apis/${GROUP}/${VERSION}/${READINESS_PLURAL}`);
  const migrationNodes = mk<MigrationNode & KubernetesObject>('migrationnodes', `/apis/${GROUP}/${VERSION}/${MIGRATION_NODE_PLURAL}`);
  const replicaSets = mk<V1ReplicaSet>('replicasets', `/apis/apps/v1${nsPath}/replicasets`);
  const namespaces = mk<V1Namespace>('namespaces', '/api/v1/namespaces');

  // Handlers only enqueue keys (routing.ts, readiness/routing.ts); reconcile reads the caches.
  const route = routing(() => probes.list(), queue);
  probes.on(route.probes);
  pods.on(route.pods);
  nodes.on(route.nodes);
  agentPods.on(route.agentPods);
  const readinessRoute = readinessRouting(() => readinesses.list(), readinessQueue);
  readinesses.on(readinessRoute.readinesses);
  probes.on(readinessRoute.probes);
  pods.on(readinessRoute.pods);

  // https when asked, or when a CA for the agents' certificate is given; then the token never goes over plain HTTP.
  const agentScheme = values['agent-scheme'] === 'https' || (values['agent-scheme'] === '' && values['agent-ca-file'] !== undefined) ? 'https' : 'http';
  const recorder = new EventRecorder({ kubeConfig: kc, component: 'migprobe-controller', host: values.identity ?? hostname(), clock, logger: log });
  const reconciler = new ProbeReconciler({
    probes,
    pods,
    nodes,
    agentPods,
    writer: kubeProbeWriter(kc),
    agents: new AgentClient({
      tokens,
      serverName: values['agent-server-name'] ?? 'migprobe-agent',
      requireTls: agentScheme === 'https',
      ...(values['agent-ca-file'] !== undefined ? { ca: readFileSync(values['agent-ca-file'], 'utf8') } : {}),
    }),
    events: recorderEventSink(recorder),
    metrics: probeMetrics(registry),
    clock,
    log,
    config: {
      agentNamespace,
      agentPort: Number(values['agent-port']),
      agentScheme,
      maxDumpsPerNode: Number(values['max-dumps-per-node']),
      agentGraceMs: Number(values['agent-grace-seconds']) * 1000,
      pollMs: Number(values['poll-interval-ms']),
    },
  });

  const readinessReconciler = new ReadinessReconciler({
    readinesses,
    probes,
    pods,
    nodes,
    agentPods,
    migrationNodes,
    replicaSets,
    namespaces,
    writer: kubeReadinessWriter(kc),
    events: readinessEventSink(recorder),
    metrics: readinessMetrics(registry),
    clock,
    log: log.child({ controller: 'migrationreadiness' }),
    config: { agentNamespace, agentScheme, agentPort: Number(values['agent-port']) },
  });

  const informers = [probes, pods, nodes, agentPods];
  const readinessInformers = [readinesses, migrationNodes, replicaSets, namespaces];
  let controller: Controller | undefined;
  let readinessController: Controller | undefined;
  let leading = !values['leader-elect'];
  const bind = /^(.*):(\d+)$/.exec(values['metrics-bind'] ?? '');
  const health = await startHealthServer({
    registry,
    host: bind?.[1] ?? '127.0.0.1',
    port: Number(bind?.[2] ?? 0),
    // A standby replica is ready: waiting for the Lease is its job. The leader is ready once its caches synced.
    ready: () => !leading || informers.every((i) => i.hasSynced()),
    logger: log,
  });
  log.info('metrics and health endpoints up', { url: health.url });

  const startWork = async (): Promise<void> => {
    for (const i of informers) i.start();
    await Promise.all(informers.map((i) => i.waitForSync()));
    log.info('caches synced; reconciling', { probes: probes.list().length });
    controller = new Controller({
      name: 'migrationprobe',
      queue,
      reconcile: (key) => reconciler.reconcile(key),
      workers: Number(values.workers),
      metrics: new ControllerMetrics(registry, 'migrationprobe'),
      logger: log,
      clock,
    });
    controller.start();
    // The readiness controller waits for its own informers in the background: the probe controller (and the
    // shutdown handlers) never wait for them, e.g. for a CRD not installed yet.
    startReadiness().catch((e: unknown) => log.error('readiness controller failed', { error: (e as Error).message }));
  };

  const startReadiness = async (): Promise<void> => {
    for (const i of readinessInformers) i.start();
    await Promise.all(readinessInformers.map((i) => i.waitForSync()));
    if (stopping) return;
    log.info('readiness caches synced; reconciling', { readinesses: readinesses.list().length });
    readinessController = new Controller({
      name: 'migrationreadiness',
      queue: readinessQueue,
      reconcile: (key) => readinessReconciler.reconcile(key),
      workers: 1,
      metrics: new ControllerMetrics(registry, 'migrationreadiness'),
      logger: log,
      clock,
    });
    readinessController.start();
  };

  let stopping = false;
  const stop = async (sig: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal: sig, leading });
    await Promise.all([controller?.stop(20_000), readinessController?.stop(20_000)]);
    queue.shutDown();
    readinessQueue.shutDown();
    await Promise.all([...informers, ...readinessInformers].map((i) => i.stop()));
    await leader?.stop();
    await recorder.flush();
    await health.close();
    log.info('stopped');
  };

  const leader = values['leader-elect']
    ? startLeaderElection({
        kubeConfig: kc,
        namespace: values['lease-namespace'] ?? 'migprobe-system',
        name: values['lease-name'] ?? 'migprobe-controller',
        identity: values.identity ?? hostname(),
        logger: log,
        clock,
        onStartedLeading: () => {
          leading = true;
          startWork().catch((e: unknown) => log.error('controller failed', { error: (e as Error).message }));
        },
        onStoppedLeading: (reason) => {
          if (reason !== 'lost') return;
          // Losing the lease means another replica may act: stop at once, and exit so we restart clean.
          log.error('lost the leader lease; exiting');
          void stop('lease-lost').finally(() => process.exit(1));
        },
      })
    : undefined;
  if (!values['leader-elect']) await startWork();

  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      stop(sig)
        .then(() => process.exit(0))
        .catch((e: unknown) => {
          log.error('shutdown failed', { error: (e as Error).message });
          process.exit(1);
        });
    });
  }
}

main().catch((e: unknown) => {
  log.error('controller failed to start', { error: (e as Error).message });
  process.exit(1);
});
