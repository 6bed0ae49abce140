// The source side of a probe on the node agent: the controller's PUT starts it (the live MigrationProbe with the
// path's UID must name this pod, container and target node: authz.ts; node and container checks; a restore-only
// checkpoint must be of the probe's namespace; the target agent's address is found here, from its pod; the
// per-node dump limit), then it runs the engine's source half, hands the image set to the target agent
// (tar.gz, sha256, upload; a busy target is retried after its Retry-After on the injected clock until the
// probe's timeout) and composes the verdict with the engine's one composeVerdict (src/engine/compose.ts), the
// same one `migprobe check` uses.

import { realpath, rm, stat, mkdir } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import type { ContainerRef, DumpCheckResult, NodeFacts, ProbeOptions, RestoreCheckResult } from '../engine/index.ts';
import { composeVerdict, hasImages, stagePhase, type TransferOutcome } from '../engine/index.ts';
import { sha256File } from '../engine/index.ts';
import { sleep } from '../kube/clock.ts';
import type { Logger } from '../kube/logger.ts';
import type { Reason, ReasonCode } from '../verdict.ts';
import { AgentHttpError, AgentUnreachableError, type AgentClient } from '../agent-api/client.ts';
import { authorizeStart, checkpointOwnership, isRefusal } from './authz.ts';
import type { AgentDeps } from './deps.ts';
import { HttpError, OperationFailed } from './errors.ts';
import type { Operation, OperationRegistry } from './operations.ts';
import { agentEndpoint } from '../agent-api/peers.ts';
import { sanitizeReason, type OperationStatus, type RestoreCheckRequest, type StartRequest } from '../agent-api/protocol.ts';

/** An existing checkpoint on this node: a CRIU image folder or an archive file. */
interface Checkpoint {
  path: string;
  kind: 'imagesDir' | 'archive';
}

/** What the source half runs: the request's names, with mode, options and target taken from the live probe. */
interface SourceJob {
  namespace: string;
  podName: string;
  containerId: string;
  options: ProbeOptions;
  /** The target agent, found by this agent from the target node's agent pod (never a caller's URL). */
  target: { nodeName: string; url: string };
}

export interface SourceSideDeps extends Pick<AgentDeps, 'config' | 'engine' | 'pods' | 'probes' | 'agentPods' | 'namespaces' | 'run' | 'clock'> {
  /** The target agent's restore-check call (AgentClient in production). */
  peer: Pick<AgentClient, 'restoreCheck'>;
  ops: OperationRegistry;
  /** This node's facts (collected once, shared with the target side). */
  nodeFacts: () => Promise<NodeFacts>;
}

export class SourceSide {
  private readonly d: SourceSideDeps;
  private running = 0;
  private closing = false;

  constructor(deps: SourceSideDeps) {
    this.d = deps;
  }

  /** New operations are refused from now on (503); existing UIDs still answer. */
  stopIntake(): void {
    this.closing = true;
  }

  /**
   * PUT: start the source half, or return the existing operation with this UID (same container). The operation
   * is registered before the first await, so a concurrent PUT for the UID or the container gets 409.
   */
  async start(uid: string, req: StartRequest, log: Logger): Promise<OperationStatus> {
    const c = this.d.config;
    const existing = this.d.ops.get(uid);
    if (existing) {
      if (existing.admitting === true) throw new HttpError(409, 'OperationInProgress', `probe ${uid} is already being started on this agent (a concurrent PUT); GET /v1/probes/${uid} for its state`, 1);
      if (existing.container !== undefined && existing.container !== req.containerId) {
        throw new HttpError(409, 'OperationInProgress', `probe ${uid} already has an operation on this agent for container ${existing.container}, not ${req.containerId}`);
      }
      return existing.status;
    }
    if (this.closing) throw new HttpError(503, 'AgentUnavailable', 'agent is shutting down', 2);
    if (req.target.nodeName === c.nodeName) throw new HttpError(409, 'SameNode', 'the target node is this node');
    if (this.running >= c.maxConcurrentDumps) throw new HttpError(429, 'Busy', 'too many dumps running on this node', 1);
    const status: OperationStatus = { uid, role: 'source', state: 'Running', stage: 'preflight', startedAt: new Date(this.d.clock.now()).toISOString() };
    const abort = new AbortController();
    const op: Operation = { status, dir: this.d.ops.dirOf(uid), done: Promise.resolve(), abort, container: req.containerId, admitting: true };
    this.d.ops.claim(op); // no await above this line
    this.running++;
    let checkpoint: Checkpoint | undefined;
    let job: SourceJob;
    let mode: string;
    try {
      // Only for a live MigrationProbe with this UID, in the pod's namespace, naming this pod, container and target.
      const probe = await this.d.probes(req.namespace, req.probeName);
      const pod = await this.d.pods(req.namespace, req.podName);
      const authz = authorizeStart(probe, uid, req, pod);
      if (isRefusal(authz)) throw new HttpError(authz.status, authz.code, authz.message);
      // Refuse work for pods that are not on this node, or whose container is not the one named.
      if (!pod) throw new HttpError(404, 'PodNotFound', `pod ${req.namespace}/${req.podName} not found`);
      if (pod.nodeName !== c.nodeName) throw new HttpError(403, 'PodNotOnNode', `pod ${req.namespace}/${req.podName} is not on node ${c.nodeName}`);
      if (pod.containerIds[req.containerName] !== `containerd://${req.containerId}`) {
        throw new HttpError(409, 'ContainerNotFound', `container ${req.containerName} of pod ${req.namespace}/${req.podName} is not containerd://${req.containerId}`);
      }
      mode = authz.mode;
      if (authz.mode === 'RestoreOnly') checkpoint = await this.resolveCheckpoint(authz.checkpointPath ?? '', req.namespace);
      const url = await this.targetAgent(authz.targetNodeName);
      job = { namespace: req.namespace, podName: req.podName, containerId: req.containerId, options: authz.options, target: { nodeName: authz.targetNodeName, url } };
      if (abort.signal.aborted) throw new HttpError(409, 'OperationInProgress', `probe ${uid} was deleted while it was being started`);
    } catch (e) {
      this.running--;
      this.d.ops.release(op);
      throw e;
    }
    op.admitting = false;
    log.info('source operation started', { pod: `${req.namespace}/${req.podName}`, container: req.containerId, target: job.target.nodeName, targetUrl: job.target.url, mode });
    op.done = this.run(op, job, checkpoint, log).finally(() => {
      this.running--;
    });
    return status;
  }

  /** The target agent's base URL, from its pod on `node` in this agent's namespace (https when TLS is on). */
  private async targetAgent(node: string): Promise<string> {
    const p = this.d.config.peers;
    let url: string | undefined;
    try {
      url = agentEndpoint(await this.d.agentPods(node), node, p);
    } catch (e) {
      throw new HttpError(503, 'AgentUnavailable', `could not look up the agent pod of node ${node}: ${(e as Error).message}`.slice(0, 1024), 2);
    }
    if (url === undefined) throw new HttpError(409, 'AgentUnavailable', `no running migprobe agent pod on the target node ${node} in namespace ${p.namespace}`);
    return url;
  }

  /**
   * A checkpoint below the checkpoint folder that provably belongs to `namespace` (authz.ts: a `<namespace>/`
   * folder, or the kubelet's name), checked on the path as given (before anything on disk is looked at, so a
   * refusal says nothing about other namespaces' files) and again on its real path (a symlink cannot lead out).
   */
  private async resolveCheckpoint(path: string, namespace: string): Promise<Checkpoint> {
    const base = this.d.config.checkpointDir;
    if (base === undefined) throw new HttpError(404, 'CheckpointNotFound', 'this agent has no checkpoint folder configured');
    const owned = async (rel: string): Promise<void> => {
      const own = checkpointOwnership(rel, namespace);
      if (!own.ok) throw new HttpError(403, 'CheckpointNotAllowed', own.message);
      for (const other of own.otherNamespaces) {
        if (await this.d.namespaces(other)) {
          throw new HttpError(403, 'CheckpointNotAllowed', `checkpoint ${rel} could be of namespace ${other} as well (the kubelet's name does not separate namespace and container): move it into <checkpoint folder>/${namespace}/`);
        }
      }
    };
    const lexical = relative(resolve(base), resolve('/', path));
    if (!path.startsWith('/') || path.includes('\0') || lexical === '' || lexical.startsWith('..')) {
      throw new HttpError(404, 'CheckpointNotFound', `checkpoint ${path} is outside the agent's checkpoint folder`);
    }
    await owned(lexical);
    let real: string;
    try {
      real = await realpath(path);
    } catch {
      throw new HttpError(404, 'CheckpointNotFound', `checkpoint ${path} not found on node ${this.d.config.nodeName}`);
    }
    const realBase = await realpath(base).catch(() => base);
    if (!real.startsWith(`${realBase}/`)) throw new HttpError(404, 'CheckpointNotFound', `checkpoint ${path} is outside the agent's checkpoint folder`);
    await owned(real.slice(realBase.length + 1));
    const st = await stat(real);
    if (st.isDirectory()) return { path: real, kind: 'imagesDir' };
    if (st.isFile()) return { path: real, kind: 'archive' };
    throw new HttpError(404, 'CheckpointNotFound', `checkpoint ${path} is neither an image folder nor an archive`);
  }

  /** Source half -> hand-over -> (target half, on the target agent) -> composeVerdict. */
  private async run(op: Operation, req: SourceJob, checkpoint: Checkpoint | undefined, log: Logger): Promise<void> {
    const t0 = this.d.clock.now();
    const st = op.status;
    const signal = op.abort?.signal ?? new AbortController().signal;
    // The outcome is published only after the work folder is gone, so "Done" also means "cleaned up".
    let outcome: Pick<OperationStatus, 'state' | 'verdict' | 'error'>;
    try {
      await mkdir(op.dir, { recursive: true, mode: 0o700 });
      let dump: DumpCheckResult;
      if (checkpoint !== undefined) {
        const facts = await this.d.nodeFacts();
        dump = { reasons: [], timings: {}, sizes: {}, criuVersion: facts.criuVersion, bundleDir: checkpoint.path };
      } else {
        st.stage = 'dump';
        const ref: ContainerRef = { containerId: req.containerId, namespace: this.d.config.containerd.namespace };
        if (this.d.config.containerd.address !== undefined) ref.containerdAddress = this.d.config.containerd.address;
        dump = await this.d.engine.sourceDumpCheck(ref, req.options, op.dir, signal);
      }
      signal.throwIfAborted();
      let transfer: TransferOutcome | undefined;
      let restore: RestoreCheckResult | undefined;
      if (hasImages(dump)) {
        st.stage = 'transfer';
        const shipped = await this.ship(op, req, checkpoint ?? { path: dump.bundleDir, kind: 'imagesDir' }, checkpoint !== undefined, log);
        transfer = shipped.transfer;
        restore = shipped.restore;
        signal.throwIfAborted();
      }
      const verdict = composeVerdict({ dump, ...(transfer ? { transfer } : {}), ...(restore ? { restore } : {}), totalMs: this.d.clock.now() - t0 });
      outcome = { state: 'Done', verdict };
      log.info('source operation done', { migratable: verdict.migratable, reasons: verdict.reasons.map((r) => r.code) });
    } catch (e) {
      const error: Reason = signal.aborted
        ? { code: 'InternalError', phase: stagePhase(st.stage), message: `agent on ${this.d.config.nodeName}: the probe was deleted during its ${st.stage} stage; the operation was cancelled and the workload left running`, hint: 'create the MigrationProbe again to re-run it' }
        : e instanceof OperationFailed
          ? e.reason
          : { code: 'InternalError', phase: stagePhase(st.stage), message: `agent on ${this.d.config.nodeName}: ${(e as Error).message}`.slice(0, 2048), hint: 'see the agent log on that node' };
      outcome = { state: 'Failed', error };
      log.error('source operation failed', { code: error.code, error: (e as Error).message });
    }
    await rm(op.dir, { recursive: true, force: true }).catch(() => undefined);
    st.stage = 'done';
    st.finishedAt = new Date(this.d.clock.now()).toISOString();
    if (outcome.verdict) st.verdict = outcome.verdict;
    if (outcome.error) st.error = outcome.error;
    st.state = outcome.state;
    this.d.ops.expireLater(op);
  }

  /** tar.gz the image set, hash it, stream it to the target agent, wait for its restore check. */
  private async ship(op: Operation, req: SourceJob, what: Checkpoint, restoreOnly: boolean, log: Logger): Promise<{ transfer: TransferOutcome; restore?: RestoreCheckResult }> {
    const { clock, config } = this.d;
    const archive = join(op.dir, 'bundle.tar.gz');
    const t0 = clock.now();
    // The image set did not reach the target (or the target refused it): no shippedBytes.
    const fail = (code: ReasonCode, message: string, hint: string): { transfer: TransferOutcome } => ({
      transfer: { ms: clock.now() - t0, failure: { code, phase: 'transfer', message, hint } },
    });
    try {
      // A folder travels as its contents; an archive file as itself, named in the request.
      const args = what.kind === 'imagesDir' ? ['-C', what.path, '-czf', archive, '.'] : ['-C', dirname(what.path), '-czf', archive, '--', basename(what.path)];
      await this.d.run('tar', args, { timeoutMs: req.options.timeoutMs });
    } catch (e) {
      return fail('TransferFailed', `packing the image set failed: ${(e as Error).message}`.slice(0, 1024), 'see the agent log on the source node');
    }
    const size = (await stat(archive)).size;
    if (size > config.maxBundleBytes) return fail('ImageTooLarge', `the image set is ${size} bytes, over the ${config.maxBundleBytes} byte cap`, 'raise the agent cap (--max-bundle-bytes) or reduce what the container holds in tmpfs/ghost files');
    const sha256 = await sha256File(archive);
    let sourceFacts: NodeFacts | undefined;
    try {
      sourceFacts = await this.d.nodeFacts();
    } catch (e) {
      log.warn('could not collect node facts', { error: (e as Error).message });
    }
    const rreq: RestoreCheckRequest = { namespace: req.namespace, podName: req.podName, sourceNodeName: config.nodeName, options: req.options };
    if (restoreOnly) rreq.restoreOnly = what.kind === 'archive' ? { kind: 'archive', name: basename(what.path) } : { kind: 'imagesDir' };
    if (sourceFacts) rreq.sourceFacts = sourceFacts;
    const deadline = t0 + req.options.timeoutMs;
    for (;;) {
      try {
        op.status.stage = 'restore';
        const restore = await this.d.peer.restoreCheck(req.target.url, op.status.uid, rreq, { path: archive, sha256 }, Math.max(1000, deadline - clock.now()), op.abort?.signal);
        // The target measured nothing of the transfer; the upload and restore overlap in one request, so the
        // transfer time is the request time minus the restore time the target reports.
        const total = clock.now() - t0;
        const ms = Math.max(0, total - (restore.timings.restoreMs ?? 0));
        const reasons = (Array.isArray(restore.reasons) ? restore.reasons : []).map((r) => sanitizeReason(r, 'restore')).filter((r): r is Reason => r !== undefined);
        return { transfer: { ms, shippedBytes: size }, restore: { ...restore, reasons } };
      } catch (e) {
        if (e instanceof AgentHttpError && e.status === 429 && clock.now() + 1000 < deadline) {
          // The target is busy: retry after its Retry-After, within the probe's timeout.
          await sleep(clock, e.retryAfterMs ?? 1000, op.abort?.signal);
          op.abort?.signal.throwIfAborted();
          continue;
        }
        if (e instanceof AgentHttpError && e.body?.code === 'ImageTooLarge') return fail('ImageTooLarge', e.body.message, 'raise the target agent cap (--max-bundle-bytes)');
        if (e instanceof AgentHttpError && e.body?.code === 'TransferFailed') return fail('TransferFailed', e.body.message, 'retry the probe; check the network between the two nodes');
        if (e instanceof AgentHttpError) {
          // The bytes got there; the target could not check them.
          const code = e.body?.code === 'Timeout' ? 'Timeout' : 'RestoreFailed';
          return { transfer: { ms: clock.now() - t0, shippedBytes: size, failure: { code, phase: 'restore', message: `target agent ${req.target.nodeName}: ${e.message}`.slice(0, 2048), hint: 'see the agent log on the target node' } } };
        }
        if (e instanceof AgentUnreachableError) {
          // No answer from the target agent: the probe cannot reach a verdict (it is not "not migratable").
          throw new OperationFailed({
            code: 'AgentUnavailable',
            phase: 'transfer',
            message: `the agent on the target node ${req.target.nodeName} did not answer: ${e.message}`.slice(0, 1024),
            hint: 'check the migprobe agent pod on the target node and that agents can reach each other on the agent port',
          });
        }
        if ((e as Error).name === 'TimeoutError' || (e as Error).name === 'AbortError') {
          return fail('TransferFailed', `could not ship the image set to the agent on ${req.target.nodeName}: ${(e as Error).message}`.slice(0, 1024), 'check that the agent runs on the target node and that agents can reach each other');
        }
        throw e;
      }
    }
  }
}
