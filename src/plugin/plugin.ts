// `kubectl migprobe`'s behaviour, with the API client, the clock and the streams injected so the output,
// the waiting and the exit codes are unit-testable. src/plugin/main.ts wires the real ones; src/plugin/kube.ts
// is the API client.

import type { MigrationNode } from '../api/migrationnode.ts';
import { READINESS_KIND, RERUN_ANNOTATION, type MigrationReadiness, type ReadinessSpec } from '../api/readiness.ts';
import { API_VERSION, KIND, isFinalPhase, type MigrationProbe, type MigrationProbeSpec } from '../api/v1alpha1.ts';
import { EXIT_ERROR, EXIT_MIGRATABLE, EXIT_NOT_MIGRATABLE } from '../cli/exit-codes.ts';
import { sleep, type Clock } from '../kube/clock.ts';
import { HELP, UsageError, parsePluginArgs, type GlobalFlags, type PluginCommand } from './args.ts';
import { asList, isDrainable, progressLine, renderNodes, renderObjects, renderProbe, renderReadiness } from './render.ts';

/** The API calls the plugin makes. Errors carry `code` (HTTP status) and a message safe to show. */
export interface PluginApi {
  /** The namespace of the kubeconfig context ('' when it names none). */
  contextNamespace: string;
  createProbe(namespace: string, body: MigrationProbe): Promise<MigrationProbe>;
  getProbe(namespace: string, name: string): Promise<MigrationProbe>;
  /** undefined when there is no such readiness. */
  getReadiness(name: string): Promise<MigrationReadiness | undefined>;
  createReadiness(body: MigrationReadiness): Promise<MigrationReadiness>;
  /** JSON merge patch of the object (not its status). */
  patchReadiness(name: string, patch: Record<string, unknown>): Promise<MigrationReadiness>;
  listMigrationNodes(): Promise<MigrationNode[]>;
}

export interface PluginDeps {
  /** Loads the kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config; --context) and returns a client. */
  connect(opts: Pick<GlobalFlags, 'kubeconfig' | 'context'>): PluginApi;
  version(): Promise<string>;
  clock: Clock;
  /** A value never used before for the rerun annotation. */
  freshToken(): string;
  /** How often a wait reads the object again. */
  pollMs?: number;
}

export interface PluginIo {
  out(s: string): void;
  err(s: string): void;
  /** stderr is a terminal: the progress line is redrawn in place; otherwise a line is printed when it changes. */
  errIsTTY: boolean;
  columns: number;
}

/** An error the user can act on: the message names what to do. */
class PluginError extends Error {
  override name = 'PluginError';
}

const codeOf = (err: unknown): number | undefined => {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'number' ? c : undefined;
};

/** An API error in the user's terms, with a hint where the cause is known. */
export function describeApiError(err: unknown, what: string): string {
  const msg = err instanceof Error ? err.message : String(err);
  switch (codeOf(err)) {
    case 404:
      return `${what}: ${msg}: the migprobe CRDs are not installed in this cluster? (kubectl get crd ${what.split(' ')[0] ?? ''}.migprobe.io; install the chart, or pick the cluster with --context)`;
    case 403:
      return `${what}: ${msg}: your user may not do this (kubectl auth can-i --list; pick another user or cluster with --context)`;
    case 401:
      return `${what}: ${msg}: the cluster refused your credentials (check --kubeconfig and --context)`;
    default:
      return `${what}: ${msg}`;
  }
}

function namespaceOf(g: GlobalFlags, api: PluginApi): string {
  return g.namespace ?? (api.contextNamespace !== '' ? api.contextNamespace : 'default');
}

export async function runPlugin(argv: readonly string[], deps: PluginDeps, io: PluginIo): Promise<number> {
  let parsed;
  try {
    parsed = parsePluginArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      const help = err.command === undefined ? 'kubectl migprobe --help' : `kubectl migprobe ${err.command} --help`;
      io.err(`error: ${err.message}\nSee '${help}' for usage.\n`);
      return EXIT_ERROR;
    }
    throw err;
  }
  const { globals, command } = parsed;
  if (command.kind === 'help') {
    io.out(HELP[command.topic ?? 'top']);
    return 0;
  }
  if (command.kind === 'version') {
    io.out(`kubectl-migprobe ${await deps.version()}\n`);
    return 0;
  }
  let api: PluginApi;
  try {
    api = deps.connect({ ...(globals.kubeconfig === undefined ? {} : { kubeconfig: globals.kubeconfig }), ...(globals.context === undefined ? {} : { context: globals.context }) });
  } catch (err) {
    io.err(`error: cannot load the kubeconfig: ${err instanceof Error ? err.message : String(err)} (give the file with --kubeconfig or KUBECONFIG, the context with --context)\n`);
    return EXIT_ERROR;
  }
  try {
    return await run(command, globals, api, deps, io);
  } catch (err) {
    io.err(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT_ERROR;
  }
}

async function run(command: Exclude<PluginCommand, { kind: 'help' | 'version' }>, g: GlobalFlags, api: PluginApi, deps: PluginDeps, io: PluginIo): Promise<number> {
  switch (command.kind) {
    case 'check':
      return await check(command, g, api, deps, io);
    case 'drain-check':
      return await drainCheck(command, g, api, deps, io);
    case 'nodes': {
      let nodes: MigrationNode[];
      try {
        nodes = await api.listMigrationNodes();
      } catch (err) {
        throw new PluginError(describeApiError(err, 'migrationnodes list'));
      }
      if (g.output === 'json' || g.output === 'yaml') io.out(renderObjects(asList(nodes), g.output));
      else io.out(renderNodes(nodes, g.output === 'wide'));
      return 0;
    }
  }
}

/** The probe a check creates. Pure. */
export function probeFor(c: Extract<PluginCommand, { kind: 'check' }>, namespace: string): MigrationProbe {
  const spec: MigrationProbeSpec = { podName: c.pod, targetNodeName: c.targetNode };
  if (c.container !== undefined) spec.containerName = c.container;
  if (c.mode === 'RestoreOnly') {
    spec.mode = 'RestoreOnly';
    if (c.checkpoint !== undefined) spec.checkpoint = { path: c.checkpoint };
  }
  return { apiVersion: API_VERSION, kind: KIND, metadata: { generateName: `${c.pod}-to-${c.targetNode}-`, namespace }, spec };
}

async function check(c: Extract<PluginCommand, { kind: 'check' }>, g: GlobalFlags, api: PluginApi, deps: PluginDeps, io: PluginIo): Promise<number> {
  const namespace = namespaceOf(g, api);
  let created: MigrationProbe;
  try {
    created = await api.createProbe(namespace, probeFor(c, namespace));
  } catch (err) {
    throw new PluginError(describeApiError(err, 'migrationprobes create'));
  }
  const name = created.metadata.name ?? '';
  if (!c.wait) {
    if (g.output === 'json' || g.output === 'yaml') io.out(renderObjects(created, g.output));
    else io.out(`migrationprobe.migprobe.io/${name} created (namespace ${namespace}); add --wait for the verdict, or: kubectl wait -n ${namespace} --for=condition=Migratable mprobe/${name}\n`);
    return EXIT_MIGRATABLE;
  }
  const start = deps.clock.now();
  let p = created;
  for (;;) {
    if (isFinalPhase(p.status?.phase)) break;
    if (deps.clock.now() - start >= c.timeoutMs) {
      io.err(`error: probe ${namespace}/${name} did not finish within ${Math.round(c.timeoutMs / 1000)}s (phase ${p.status?.phase ?? 'none yet'}): wait longer with --timeout, or see kubectl describe -n ${namespace} mprobe/${name}\n`);
      return EXIT_ERROR;
    }
    await sleep(deps.clock, deps.pollMs ?? 1000);
    try {
      p = await api.getProbe(namespace, name);
    } catch (err) {
      throw new PluginError(describeApiError(err, `migrationprobes get ${name}`));
    }
  }
  if (g.output === 'json' || g.output === 'yaml') io.out(renderObjects(p, g.output));
  else io.out(renderProbe(p, io.columns));
  if (p.status?.phase === 'Failed') return EXIT_ERROR;
  return p.status?.migratable === true ? EXIT_MIGRATABLE : EXIT_NOT_MIGRATABLE;
}

/** The readiness spec drain-check asks for. Pure. */
export function readinessSpecFor(c: Extract<PluginCommand, { kind: 'drain-check' }>): ReadinessSpec {
  return { source: { nodeName: c.node }, ...(c.targets === undefined ? {} : { targets: c.targets }) };
}

/**
 * Creates the readiness, or asks the existing one for a run: the rerun annotation gets `token`, a fresh value
 * (and the targets, when given, replace the old ones). The run is answered when status.observedRerun is `token`.
 */
async function startRun(c: Extract<PluginCommand, { kind: 'drain-check' }>, api: PluginApi, token: string): Promise<void> {
  let existing: MigrationReadiness | undefined;
  try {
    existing = await api.getReadiness(c.name);
  } catch (err) {
    throw new PluginError(describeApiError(err, `migrationreadinesses get ${c.name}`));
  }
  try {
    if (existing === undefined) {
      await api.createReadiness({
        apiVersion: API_VERSION,
        kind: READINESS_KIND,
        metadata: { name: c.name, annotations: { [RERUN_ANNOTATION]: token } },
        spec: readinessSpecFor(c),
      });
      return;
    }
    const source = existing.spec.source.nodeName;
    if (source !== undefined && source !== c.node) {
      throw new PluginError(`MigrationReadiness ${c.name} selects pods on ${source}, not ${c.node}: give another name with --name`);
    }
    const patch: Record<string, unknown> = { metadata: { annotations: { [RERUN_ANNOTATION]: token } } };
    // Merge patch: the keys not given are removed, so --to and --to-nodes replace each other.
    if (c.targets !== undefined) patch.spec = { targets: 'nodeNames' in c.targets ? { nodeNames: c.targets.nodeNames, nodeSelector: null } : { nodeSelector: c.targets.nodeSelector, nodeNames: null } };
    await api.patchReadiness(c.name, patch);
  } catch (err) {
    if (err instanceof PluginError) throw err;
    throw new PluginError(describeApiError(err, `migrationreadinesses ${existing === undefined ? 'create' : 'patch'} ${c.name}`));
  }
}

async function drainCheck(c: Extract<PluginCommand, { kind: 'drain-check' }>, g: GlobalFlags, api: PluginApi, deps: PluginDeps, io: PluginIo): Promise<number> {
  const token = deps.freshToken();
  await startRun(c, api, token);
  const start = deps.clock.now();
  let last = '';
  let drawn = false;
  const progress = (r: MigrationReadiness | undefined): void => {
    const line = progressLine(r, deps.clock.now() - start);
    if (io.errIsTTY) {
      io.err(`\r${line}\u001b[K`);
      drawn = true;
    } else {
      // Plain lines only when something other than the elapsed time changed.
      const key = line.replace(/ \(\d+s\)$/, '');
      if (key !== last) io.err(`${line}\n`);
      last = key;
    }
  };
  let r: MigrationReadiness | undefined;
  for (;;) {
    try {
      r = await api.getReadiness(c.name);
    } catch (err) {
      throw new PluginError(describeApiError(err, `migrationreadinesses get ${c.name}`));
    }
    if (r === undefined) throw new PluginError(`MigrationReadiness ${c.name} was deleted while drain-check waited`);
    const ours = r.status?.observedRerun === token;
    const answered = ours && (r.status?.phase === 'Completed' || r.status?.phase === 'Failed');
    // Until the controller took the request, the status is the previous run's, unless a run is under way.
    progress(ours || r.status?.phase === 'Running' ? r : { metadata: r.metadata, spec: r.spec });
    if (answered) break;
    if (deps.clock.now() - start >= c.timeoutMs) {
      if (drawn) io.err('\n');
      io.err(`error: MigrationReadiness ${c.name} did not finish its run within ${Math.round(c.timeoutMs / 1000)}s: wait longer with --timeout, or see kubectl describe migrationreadiness ${c.name}\n`);
      return EXIT_ERROR;
    }
    await sleep(deps.clock, deps.pollMs ?? 1000);
  }
  if (drawn) io.err('\n');
  if (g.output === 'json' || g.output === 'yaml') io.out(renderObjects(r, g.output));
  else io.out(renderReadiness(r, g.output === 'wide'));
  if (r.status?.phase === 'Failed') {
    const conds = r.status.conditions ?? [];
    const cond = conds.find((x) => x.type === 'Drainable') ?? conds.find((x) => x.status === 'False');
    io.err(`error: the run failed${cond === undefined ? '' : `: ${cond.reason}: ${cond.message}`}\n`);
    return EXIT_ERROR;
  }
  return isDrainable(r) ? 0 : 1;
}
