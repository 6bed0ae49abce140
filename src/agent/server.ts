// The node agent's HTTP API. One agent per node: it runs the source half of a probe (preflight + dump check)
// for containers on its node, ships the image set to the target agent, and runs the target half (restore check)
// for images it receives. Operations are keyed by the probe's UID and idempotent; their state is kept in
// memory (a restarted agent answers 404 for an old UID, and the controller fails that probe).

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, realpath, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import type { AddressInfo } from 'node:net';
import type { ContainerRef, DumpCheckResult, NodeFacts, ProbeOptions, RestoreCheckResult, TargetRoot } from '../engine/api.ts';
import type { Clock } from '../kube/clock.ts';
import type { Logger } from '../kube/logger.ts';
import type { Reason, ReasonCode, Verdict } from '../verdict.ts';
import type { CheckpointSource } from '../engine/checkpoint.ts';
import type { Authenticator } from './auth.ts';
import { AgentHttpError, AgentUnreachableError, type AgentClient } from './client.ts';
import { composeVerdict, shouldShip, type TransferOutcome } from './compose.ts';
import {
  decodeHeaderJson,
  HEADER_REQUEST,
  HEADER_SHA256,
  isProbeUid,
  isSha256Hex,
  parseRestoreCheckRequest,
  parseStartRequest,
  sanitizeReason,
  ValidationError,
  type OperationStatus,
  type RestoreCheckRequest,
  type StartRequest,
} from './protocol.ts';

/** The engine's functions the agent uses (src/engine/probe.ts, facts.ts, dump.ts), injectable for tests. */
export interface AgentEngine {
  sourceDumpCheck(ref: ContainerRef, opts: ProbeOptions, workDir: string): Promise<DumpCheckResult>;
  targetRestoreCheck(bundleDir: string, opts: ProbeOptions, target: TargetRoot, sourceFacts?: NodeFacts): Promise<RestoreCheckResult>;
  collectNodeFacts(criu: string): Promise<NodeFacts>;
  /** Restore-only: would this existing full checkpoint restore here (restored stopped, killed, never run)? */
  checkRestoreOnly(src: CheckpointSource, opts: ProbeOptions, target: TargetRoot): Promise<Verdict>;
}

/** An existing checkpoint on this node: a CRIU image folder or an archive file. */
interface Checkpoint {
  path: string;
  kind: 'imagesDir' | 'archive';
}

/** What the agent needs to know about a pod (from the API server). */
export interface PodInfo {
  nodeName: string | undefined;
  /** container name -> containerID as the kubelet reports it (`containerd://<id>`). */
  containerIds: Record<string, string>;
}
export type PodLookup = (namespace: string, name: string) => Promise<PodInfo | undefined>;

/** Runs a program with an argument array; rejects when it fails. */
export type Runner = (file: string, args: string[], opts: { timeoutMs: number }) => Promise<void>;

export interface AgentConfig {
  nodeName: string;
  workRoot: string;
  criu: string;
  containerd: { address?: string; namespace: string };
  /** RestoreOnly checkpoints are read only from below this folder. */
  checkpointDir?: string;
  /** Largest image set accepted from a peer. */
  maxBundleBytes: number;
  /** Concurrent source operations (dumps) on this node; more answer 429. */
  maxConcurrentDumps: number;
  maxConcurrentRestores: number;
  /** How long finished operations are remembered (for the controller's GET). */
  retainFinishedMs: number;
}

export interface AgentDeps {
  config: AgentConfig;
  engine: AgentEngine;
  auth: Authenticator;
  pods: PodLookup;
  peer: AgentClient;
  run: Runner;
  clock: Clock;
  log: Logger;
}

interface Operation {
  status: OperationStatus;
  dir: string;
  done: Promise<void>;
}

/** The operation cannot reach a verdict, for the reason given (the controller fails the probe with it). */
class OperationFailed extends Error {
  override name = 'OperationFailed';
  readonly reason: Reason;
  constructor(reason: Reason) {
    super(reason.message);
    this.reason = reason;
  }
}

class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly retryAfterS: number | undefined;
  constructor(status: number, code: string, message: string, retryAfterS?: number) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

const MAX_JSON_BODY = 64 * 1024;

export class AgentServer {
  private readonly d: AgentDeps;
  private readonly ops = new Map<string, Operation>();
  private server: Server | undefined;
  private runningDumps = 0;
  private runningRestores = 0;
  private facts: Promise<NodeFacts> | undefined;
  private closing = false;

  constructor(deps: AgentDeps) {
    this.d = deps;
  }

  /** Serves HTTP, or HTTPS when `tls` (PEM cert chain and key) is given. */
  async listen(host: string, port: number, tls?: { cert: string; key: string }): Promise<AddressInfo> {
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      this.handle(req, res).catch((e: unknown) => {
        this.d.log.error('request handler failed', { error: (e as Error).message });
        if (!res.headersSent) sendJson(res, 500, { code: 'InternalError', message: 'internal error' });
        else res.destroy();
      });
    };
    const srv: Server = tls ? createTlsServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, handler) : createServer(handler);
    srv.requestTimeout = 0; // restore-check bodies are bounded by our own timeout
    srv.headersTimeout = 30_000;
    this.server = srv;
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, () => resolve());
    });
    return srv.address() as AddressInfo;
  }

  /** Stops intake, waits for running operations (each one thaws its workload) up to `deadlineMs`. */
  async close(deadlineMs = 30_000): Promise<void> {
    this.closing = true;
    const srv = this.server;
    const closed = srv ? new Promise<void>((r) => srv.close(() => r())) : Promise.resolve();
    srv?.closeIdleConnections();
    const running = [...this.ops.values()].filter((o) => o.status.state === 'Running').map((o) => o.done);
    await Promise.race([Promise.allSettled(running), new Promise((r) => setTimeout(r, deadlineMs).unref())]);
    srv?.closeAllConnections();
    await closed;
  }

  /** Deletes what a previous run of the agent left in the work folder (after recoverFrozen has thawed it). */
  async sweepWorkRoot(): Promise<string[]> {
    await mkdir(this.d.config.workRoot, { recursive: true, mode: 0o700 });
    const names = await readdir(this.d.config.workRoot);
    const removed: string[] = [];
    for (const n of names) {
      if (this.ops.has(n)) continue;
      await rm(join(this.d.config.workRoot, n), { recursive: true, force: true });
      removed.push(n);
    }
    return removed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://agent');
    if (req.method === 'GET' && url.pathname === '/healthz') {
      sendJson(res, 200, { ok: true, node: this.d.config.nodeName });
      return;
    }
    const m = /^\/v1\/probes\/([^/]+)(\/restore-check)?$/.exec(url.pathname);
    if (!m) {
      sendJson(res, 404, { code: 'NotFound', message: 'no such endpoint' });
      req.resume();
      return;
    }
    const authn = await this.d.auth.authenticate(req.headers);
    if (!authn.ok) {
      req.resume();
      sendJson(res, authn.status, { code: 'Unauthorized', message: authn.message });
      return;
    }
    const uid = m[1] ?? '';
    try {
      if (!isProbeUid(uid)) throw new HttpError(400, 'InvalidSpec', 'malformed probe UID');
      const log = this.d.log.child({ probeUid: uid, caller: authn.username });
      if (m[2] !== undefined) {
        if (req.method !== 'POST') throw new HttpError(405, 'MethodNotAllowed', 'use POST');
        const result = await this.restoreCheck(uid, req, log);
        sendJson(res, 200, result);
        return;
      }
      switch (req.method) {
        case 'PUT': {
          const body = await readJson(req);
          const start = parseStartRequest(body);
          sendJson(res, 200, await this.start(uid, start, log));
          return;
        }
        case 'GET': {
          req.resume();
          const op = this.ops.get(uid);
          if (!op) throw new HttpError(404, 'NotFound', 'no operation with this UID on this agent');
          sendJson(res, 200, op.status);
          return;
        }
        case 'DELETE': {
          req.resume();
          await this.forget(uid);
          res.writeHead(204).end();
          return;
        }
        default:
          req.resume();
          throw new HttpError(405, 'MethodNotAllowed', 'method not allowed');
      }
    } catch (e) {
      if (e instanceof HttpError) {
        const headers: Record<string, string> = {};
        if (e.retryAfterS !== undefined) headers['retry-after'] = String(e.retryAfterS);
        sendJson(res, e.status, { code: e.code, message: e.message }, headers);
      } else if (e instanceof ValidationError) {
        sendJson(res, 400, { code: 'InvalidSpec', message: e.message });
      } else {
        throw e;
      }
    }
  }

  private nodeFacts(): Promise<NodeFacts> {
    this.facts ??= this.d.engine.collectNodeFacts(this.d.config.criu).catch((e: unknown) => {
      this.facts = undefined;
      throw e;
    });
    return this.facts;
  }

  /** PUT: start the source half, or return the existing operation with this UID. */
  private async start(uid: string, req: StartRequest, log: Logger): Promise<OperationStatus> {
    const existing = this.ops.get(uid);
    if (existing) return existing.status;
    if (this.closing) throw new HttpError(503, 'AgentUnavailable', 'agent is shutting down', 2);
    if (req.target.nodeName === this.d.config.nodeName) throw new HttpError(409, 'SameNode', 'the target node is this node');
    // Refuse work for pods that are not on this node, or whose container is not the one named.
    const pod = await this.d.pods(req.namespace, req.podName);
    if (!pod) throw new HttpError(404, 'PodNotFound', `pod ${req.namespace}/${req.podName} not found`);
    if (pod.nodeName !== this.d.config.nodeName) throw new HttpError(403, 'PodNotOnNode', `pod ${req.namespace}/${req.podName} is not on node ${this.d.config.nodeName}`);
    if (pod.containerIds[req.containerName] !== `containerd://${req.containerId}`) {
      throw new HttpError(409, 'ContainerNotFound', `container ${req.containerName} of pod ${req.namespace}/${req.podName} is not containerd://${req.containerId}`);
    }
    let checkpoint: Checkpoint | undefined;
    if (req.mode === 'RestoreOnly') checkpoint = await this.resolveCheckpoint(req.checkpointPath ?? '');
    if (this.runningDumps >= this.d.config.maxConcurrentDumps) throw new HttpError(429, 'Busy', 'too many dumps running on this node', 1);
    this.runningDumps++;
    const dir = join(this.d.config.workRoot, uid);
    const status: OperationStatus = { uid, role: 'source', state: 'Running', stage: 'preflight', startedAt: new Date(this.d.clock.now()).toISOString() };
    const op: Operation = { status, dir, done: Promise.resolve() };
    this.ops.set(uid, op);
    log.info('source operation started', { pod: `${req.namespace}/${req.podName}`, container: req.containerId, target: req.target.nodeName, mode: req.mode });
    op.done = this.runSource(op, req, checkpoint, log).finally(() => {
      this.runningDumps--;
    });
    return status;
  }

  private async resolveCheckpoint(path: string): Promise<Checkpoint> {
    const base = this.d.config.checkpointDir;
    if (base === undefined) throw new HttpError(404, 'CheckpointNotFound', 'this agent has no checkpoint folder configured');
    let real: string;
    try {
      real = await realpath(path);
    } catch {
      throw new HttpError(404, 'CheckpointNotFound', `checkpoint ${path} not found on node ${this.d.config.nodeName}`);
    }
    const realBase = await realpath(base).catch(() => base);
    if (!real.startsWith(`${realBase}/`)) throw new HttpError(404, 'CheckpointNotFound', `checkpoint ${path} is outside the agent's checkpoint folder`);
    const st = await stat(real);
    if (st.isDirectory()) return { path: real, kind: 'imagesDir' };
    if (st.isFile()) return { path: real, kind: 'archive' };
    throw new HttpError(404, 'CheckpointNotFound', `checkpoint ${path} is neither an image folder nor an archive`);
  }

  private async runSource(op: Operation, req: StartRequest, checkpoint: Checkpoint | undefined, log: Logger): Promise<void> {
    const t0 = this.d.clock.now();
    const st = op.status;
    // The outcome is published only after the work folder is gone, so "Done" also means "cleaned up".
    let outcome: Pick<OperationStatus, 'state' | 'verdict' | 'error'>;
    try {
      await mkdir(op.dir, { recursive: true, mode: 0o700 });
      let dump: DumpCheckResult;
      if (checkpoint !== undefined) {
        const facts = await this.nodeFacts();
        dump = { reasons: [], timings: {}, sizes: {}, criuVersion: facts.criuVersion, bundleDir: checkpoint.path };
      } else {
        st.stage = 'dump';
        const ref: ContainerRef = { containerId: req.containerId, namespace: this.d.config.containerd.namespace };
        if (this.d.config.containerd.address !== undefined) ref.containerdAddress = this.d.config.containerd.address;
        dump = await this.d.engine.sourceDumpCheck(ref, req.options, op.dir);
      }
      let transfer: TransferOutcome | undefined;
      let restore: RestoreCheckResult | undefined;
      if (shouldShip(dump)) {
        st.stage = 'transfer';
        const shipped = await this.ship(op, req, checkpoint ?? { path: dump.bundleDir, kind: 'imagesDir' }, checkpoint !== undefined, log);
        transfer = shipped.transfer;
        restore = shipped.restore;
      }
      const verdict = composeVerdict({ dump, ...(transfer ? { transfer } : {}), ...(restore ? { restore } : {}), totalMs: this.d.clock.now() - t0 });
      outcome = { state: 'Done', verdict };
      log.info('source operation done', { migratable: verdict.migratable, reasons: verdict.reasons.map((r) => r.code) });
    } catch (e) {
      const error: Reason =
        e instanceof OperationFailed
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
    this.scheduleExpiry(op);
  }

  /** tar.gz the image set, hash it, stream it to the target agent, wait for its restore check. */
  private async ship(op: Operation, req: StartRequest, what: Checkpoint, restoreOnly: boolean, log: Logger): Promise<{ transfer: TransferOutcome; restore?: RestoreCheckResult }> {
    const archive = join(op.dir, 'bundle.tar.gz');
    const t0 = this.d.clock.now();
    const fail = (code: ReasonCode, message: string, hint: string): { transfer: TransferOutcome } => ({
      transfer: { ms: this.d.clock.now() - t0, shippedBytes: 0, failure: { code, phase: 'transfer', message, hint } },
    });
    try {
      // A folder travels as its contents; an archive file as itself, named in the request.
      const args = what.kind === 'imagesDir' ? ['-C', what.path, '-czf', archive, '.'] : ['-C', dirname(what.path), '-czf', archive, '--', basename(what.path)];
      await this.d.run('tar', args, { timeoutMs: req.options.timeoutMs });
    } catch (e) {
      return fail('TransferFailed', `packing the image set failed: ${(e as Error).message}`.slice(0, 1024), 'see the agent log on the source node');
    }
    const size = (await stat(archive)).size;
    if (size > this.d.config.maxBundleBytes) return fail('ImageTooLarge', `the image set is ${size} bytes, over the ${this.d.config.maxBundleBytes} byte cap`, 'raise the agent cap (--max-bundle-bytes) or reduce what the container holds in tmpfs/ghost files');
    const sha256 = await sha256File(archive);
    let sourceFacts: NodeFacts | undefined;
    try {
      sourceFacts = await this.nodeFacts();
    } catch (e) {
      log.warn('could not collect node facts', { error: (e as Error).message });
    }
    const rreq: RestoreCheckRequest = { namespace: req.namespace, podName: req.podName, sourceNodeName: this.d.config.nodeName, options: req.options };
    if (restoreOnly) rreq.restoreOnly = what.kind === 'archive' ? { kind: 'archive', name: basename(what.path) } : { kind: 'imagesDir' };
    if (sourceFacts) rreq.sourceFacts = sourceFacts;
    const deadline = t0 + req.options.timeoutMs;
    for (;;) {
      try {
        op.status.stage = 'restore';
        const restore = await this.d.peer.restoreCheck(req.target.url, op.status.uid, rreq, { path: archive, sha256 }, Math.max(1000, deadline - this.d.clock.now()));
        // The target measured nothing of the transfer; the upload and restore overlap in one request, so the
        // transfer time is the request time minus the restore time the target reports.
        const total = this.d.clock.now() - t0;
        const ms = Math.max(0, total - (restore.timings.restoreMs ?? 0));
        const reasons = (Array.isArray(restore.reasons) ? restore.reasons : []).map((r) => sanitizeReason(r, 'restore')).filter((r): r is Reason => r !== undefined);
        return { transfer: { ms, shippedBytes: size }, restore: { ...restore, reasons } };
      } catch (e) {
        if (e instanceof AgentHttpError && e.status === 429 && this.d.clock.now() + 1000 < deadline) {
          await new Promise((r) => setTimeout(r, e.retryAfterMs ?? 1000));
          continue;
        }
        if (e instanceof AgentHttpError && e.body?.code === 'ImageTooLarge') return fail('ImageTooLarge', e.body.message, 'raise the target agent cap (--max-bundle-bytes)');
        if (e instanceof AgentHttpError && e.body?.code === 'TransferFailed') return fail('TransferFailed', e.body.message, 'retry the probe; check the network between the two nodes');
        if (e instanceof AgentHttpError) {
          const code = e.body?.code === 'Timeout' ? 'Timeout' : 'RestoreFailed';
          return { transfer: { ms: this.d.clock.now() - t0, shippedBytes: size, failure: { code, phase: 'restore', message: `target agent ${req.target.nodeName}: ${e.message}`.slice(0, 2048), hint: 'see the agent log on the target node' } } };
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

  /** POST restore-check on the target: receive, verify, unpack, restore in the sandbox, answer, delete. */
  private async restoreCheck(uid: string, req: IncomingMessage, log: Logger): Promise<RestoreCheckResult> {
    const shaHeader = req.headers[HEADER_SHA256];
    const reqHeader = req.headers[HEADER_REQUEST];
    const lenHeader = req.headers['content-length'];
    if (typeof shaHeader !== 'string' || !isSha256Hex(shaHeader)) throw new HttpError(400, 'InvalidSpec', 'missing or malformed sha256 header');
    if (typeof reqHeader !== 'string' || reqHeader.length > 32 * 1024) throw new HttpError(400, 'InvalidSpec', 'missing request header');
    let rreq: RestoreCheckRequest;
    try {
      rreq = parseRestoreCheckRequest(decodeHeaderJson(reqHeader));
    } catch (e) {
      throw new HttpError(400, 'InvalidSpec', `bad request header: ${(e as Error).message}`);
    }
    const declared = typeof lenHeader === 'string' && /^\d+$/.test(lenHeader) ? Number(lenHeader) : undefined;
    if (declared === undefined) throw new HttpError(411, 'InvalidSpec', 'content-length required');
    if (declared > this.d.config.maxBundleBytes) throw new HttpError(413, 'ImageTooLarge', `image set of ${declared} bytes is over the ${this.d.config.maxBundleBytes} byte cap`);
    if (rreq.sourceNodeName === this.d.config.nodeName) throw new HttpError(409, 'SameNode', 'source and target are the same node');
    const pod = await this.d.pods(rreq.namespace, rreq.podName);
    if (!pod || pod.nodeName !== rreq.sourceNodeName) throw new HttpError(403, 'PodNotOnNode', `pod ${rreq.namespace}/${rreq.podName} is not on node ${rreq.sourceNodeName}`);
    if (this.ops.get(uid)?.status.state === 'Running') throw new HttpError(409, 'Busy', 'a restore check with this UID is running');
    if (this.runningRestores >= this.d.config.maxConcurrentRestores) throw new HttpError(429, 'Busy', 'too many restore checks running on this node', 1);
    this.runningRestores++;
    const dir = join(this.d.config.workRoot, `${uid}.target`);
    const status: OperationStatus = { uid, role: 'target', state: 'Running', stage: 'transfer', startedAt: new Date(this.d.clock.now()).toISOString() };
    let release!: () => void;
    const op: Operation = { status, dir, done: new Promise<void>((r) => (release = r)) };
    this.ops.set(`${uid}.target`, op);
    try {
      await rm(dir, { recursive: true, force: true });
      await mkdir(join(dir, 'bundle'), { recursive: true, mode: 0o700 });
      const archive = join(dir, 'bundle.tar.gz');
      const hash = createHash('sha256');
      let received = 0;
      const cap = this.d.config.maxBundleBytes;
      const meter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          received += chunk.length;
          if (received > cap || received > declared) {
            cb(new HttpError(413, 'ImageTooLarge', `image set exceeds ${Math.min(cap, declared)} bytes`));
            return;
          }
          hash.update(chunk);
          cb(null, chunk);
        },
      });
      try {
        await pipeline(req, meter, createWriteStream(archive, { mode: 0o600 }), { signal: AbortSignal.timeout(rreq.options.timeoutMs) });
      } catch (e) {
        if (e instanceof HttpError) throw e;
        throw new HttpError(400, 'TransferFailed', `receiving the image set failed: ${(e as Error).message}`);
      }
      const got = hash.digest('hex');
      if (received !== declared || got !== shaHeader) throw new HttpError(400, 'TransferFailed', `image set corrupted in transit (sha256 ${got}, expected ${shaHeader})`);
      try {
        await this.d.run('tar', ['-C', join(dir, 'bundle'), '--no-same-owner', '-xzf', archive], { timeoutMs: 60_000 });
      } catch (e) {
        throw new HttpError(400, 'TransferFailed', `unpacking the image set failed: ${(e as Error).message}`.slice(0, 1024));
      }
      await rm(archive, { force: true });
      status.stage = 'restore';
      const target: TargetRoot = { namespace: this.d.config.containerd.namespace };
      if (this.d.config.containerd.address !== undefined) target.containerdAddress = this.d.config.containerd.address;
      log.info('restore check started', { source: rreq.sourceNodeName, bytes: received });
      let result: RestoreCheckResult;
      try {
        const ro = rreq.restoreOnly;
        if (ro !== undefined) {
          const src: CheckpointSource = ro.kind === 'archive' ? { archive: join(dir, 'bundle', ro.name) } : { imagesDir: join(dir, 'bundle') };
          const v = await this.d.engine.checkRestoreOnly(src, rreq.options, target);
          const facts = await this.nodeFacts();
          result = { reasons: v.reasons, timings: v.timings.restoreMs !== undefined ? { restoreMs: v.timings.restoreMs } : {}, criuVersion: v.criu.target ?? facts.criuVersion, facts };
          if (v.criuLogExcerpt !== undefined) result.criuLogExcerpt = v.criuLogExcerpt;
        } else {
          result = await this.d.engine.targetRestoreCheck(join(dir, 'bundle'), rreq.options, target, rreq.sourceFacts);
        }
      } catch (e) {
        throw new HttpError(500, 'InternalError', `restore check failed on ${this.d.config.nodeName}: ${(e as Error).message}`.slice(0, 2048));
      }
      status.state = 'Done';
      log.info('restore check done', { reasons: result.reasons.map((r) => r.code) });
      return result;
    } catch (e) {
      status.state = 'Failed';
      throw e;
    } finally {
      this.runningRestores--;
      status.stage = 'done';
      status.finishedAt = new Date(this.d.clock.now()).toISOString();
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      release();
      this.scheduleExpiry(op);
    }
  }

  private scheduleExpiry(op: Operation): void {
    this.d.clock.setTimeout(() => {
      const key = op.status.role === 'target' ? `${op.status.uid}.target` : op.status.uid;
      if (this.ops.get(key) === op) this.ops.delete(key);
    }, this.d.config.retainFinishedMs);
  }

  /** DELETE: forget the UID and remove its artifacts. A running operation is left to finish (it thaws and cleans). */
  private async forget(uid: string): Promise<void> {
    for (const key of [uid, `${uid}.target`]) {
      const op = this.ops.get(key);
      if (op && op.status.state === 'Running') continue;
      this.ops.delete(key);
      await rm(join(this.d.config.workRoot, key), { recursive: true, force: true });
    }
  }
}

function stagePhase(stage: OperationStatus['stage']): Reason['phase'] {
  switch (stage) {
    case 'preflight':
      return 'preflight';
    case 'dump':
      return 'dump';
    case 'transfer':
      return 'transfer';
    case 'restore':
      return 'restore';
    default:
      return 'setup';
  }
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const b = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(b.length), ...headers });
  res.end(b);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > MAX_JSON_BODY) throw new HttpError(413, 'InvalidSpec', 'request body too large');
    chunks.push(c);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new HttpError(400, 'InvalidSpec', 'request body is not JSON');
  }
}
