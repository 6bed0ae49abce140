// What the node agent is given: its configuration and every dependency that touches the world (the probe engine,
// TokenReview, the pod, probe, agent-pod and namespace lookups, the peer agent client, a program runner, the clock, the log). Types only; the
// agent's parts (server.ts, operations.ts, source.ts, target.ts) all take these, tests inject fakes.

import type { ContainerRef, DumpCheckResult, NodeFacts, ProbeOptions, RestoreCheckResult, TargetRoot } from '../engine/index.ts';
import type { CheckpointSource } from '../engine/index.ts';
import type { Clock } from '../kube/clock.ts';
import type { Logger } from '../kube/logger.ts';
import type { Verdict } from '../verdict.ts';
import type { V1Pod } from '@kubernetes/client-node';
import type { MigrationProbe } from '../api/v1alpha1.ts';
import type { Authenticator } from '../agent-api/auth.ts';
import type { CallerPolicy } from './authz.ts';
import type { AgentClient } from '../agent-api/client.ts';
import type { HttpLimits } from './server.ts';

/** The engine's functions the agent uses (src/engine/probe.ts, facts.ts, dump.ts), injectable for tests. */
export interface AgentEngine {
  /** Source half: preflight + dump check; `bundleDir` set when the dump produced images. `signal` cancels it
   * (the workload is left running, then it rejects). */
  sourceDumpCheck(ref: ContainerRef, opts: ProbeOptions, workDir: string, signal?: AbortSignal): Promise<DumpCheckResult>;
  /** Target half: compatibility + restore check of a received bundle (its sandbox under `workDir`, default the OS temp folder). */
  targetRestoreCheck(bundleDir: string, opts: ProbeOptions, target: TargetRoot, sourceFacts?: NodeFacts, workDir?: string): Promise<RestoreCheckResult>;
  collectNodeFacts(criu: string): Promise<NodeFacts>;
  /** Restore-only: would this existing full checkpoint restore here (restored stopped, killed, never run)? */
  checkRestoreOnly(src: CheckpointSource, opts: ProbeOptions, target: TargetRoot, workDir?: string): Promise<Verdict>;
}

/** What the agent needs to know about a pod (from the API server). */
export interface PodInfo {
  nodeName: string | undefined;
  /** container name -> containerID as the kubelet reports it (`containerd://<id>`). */
  containerIds: Record<string, string>;
  /** spec.containers' names, in order (a probe without containerName means the first). */
  containerNames: string[];
}
export type PodLookup = (namespace: string, name: string) => Promise<PodInfo | undefined>;
/** The live MigrationProbe `namespace/name` from the API server, or undefined when there is none. */
export type ProbeLookup = (namespace: string, name: string) => Promise<MigrationProbe | undefined>;
/** The agent pods (by label, in the agent's own namespace) on `node`, from the API server. */
export type AgentPodLister = (node: string) => Promise<V1Pod[]>;
/** Whether the namespace exists (a kubelet checkpoint name another namespace could also claim is refused). */
export type NamespaceLookup = (name: string) => Promise<boolean>;

/** Runs a program with an argument array; rejects when it fails. */
export type Runner = (file: string, args: string[], opts: { timeoutMs: number }) => Promise<void>;

export interface AgentConfig {
  nodeName: string;
  workRoot: string;
  criu: string;
  containerd: { address?: string; namespace: string };
  /** RestoreOnly checkpoints are read only from below this folder. */
  checkpointDir?: string;
  /** Largest image set accepted from a peer (compressed bytes on the wire). */
  maxBundleBytes: number;
  /** Most bytes a received image set may unpack to (default BUNDLE_MAX_UNPACKED_BYTES, extract.ts). */
  maxUnpackedBytes?: number;
  /** Most members (files, folders) a received image set may hold (default BUNDLE_MAX_ENTRIES, extract.ts). */
  maxBundleEntries?: number;
  /** Concurrent source operations (dumps) on this node; more answer 429. */
  maxConcurrentDumps: number;
  maxConcurrentRestores: number;
  /** How long finished operations are remembered (for the controller's GET). */
  retainFinishedMs: number;
  /** The HTTP server's bounds (server.ts DEFAULT_HTTP_LIMITS for what is not set). */
  http?: Partial<HttpLimits>;
  /** Who may call which endpoint. */
  callers: CallerPolicy;
  /** How this agent reaches peer agents: their pods' namespace (its own), the scheme (https when TLS is on), the port. */
  peers: { namespace: string; scheme: 'http' | 'https'; defaultPort: number };
}

export interface AgentDeps {
  config: AgentConfig;
  engine: AgentEngine;
  auth: Authenticator;
  pods: PodLookup;
  probes: ProbeLookup;
  agentPods: AgentPodLister;
  namespaces: NamespaceLookup;
  peer: AgentClient;
  run: Runner;
  clock: Clock;
  log: Logger;
}
