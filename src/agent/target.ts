// The target side of a probe on the node agent: a peer agent's POST restore-check. Checks the request (headers,
// size cap, the pod being on the claimed source node, the per-node restore limit), receives the tar.gz into its
// operation folder in the agent's work root while metering, hashing and unpacking it (extract.ts: regular files
// and folders only, capped), runs the engine's target half (or the restore-only check) with its sandbox in that
// folder too, answers the result and deletes everything it received.

import { lstat, mkdir, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { NodeFacts, RestoreCheckResult, TargetRoot } from '../engine/index.ts';
import type { CheckpointSource } from '../engine/index.ts';
import { ManifestError, parseNodeFacts } from '../engine/index.ts';
import { ROOTFS_DIFF } from '../engine/index.ts';
import { checkRootfsDiff } from '../engine/index.ts';
import type { Logger } from '../kube/logger.ts';
import type { AgentDeps } from './deps.ts';
import { HttpError } from './errors.ts';
import { BUNDLE_MAX_ENTRIES, BUNDLE_MAX_UNPACKED_BYTES, BundleRefused, checkCheckpointArchive, receiveBundle } from './extract.ts';
import { targetKey, type Operation, type OperationRegistry } from './operations.ts';
import { decodeHeaderJson, HEADER_REQUEST, HEADER_SHA256, isSha256Hex, parseRestoreCheckRequest, type OperationStatus, type RestoreCheckRequest } from '../agent-api/protocol.ts';

export interface TargetSideDeps extends Pick<AgentDeps, 'config' | 'engine' | 'pods' | 'run' | 'clock'> {
  ops: OperationRegistry;
  /** This node's facts (collected once, shared with the source side). */
  nodeFacts: () => Promise<NodeFacts>;
}

export class TargetSide {
  private readonly d: TargetSideDeps;
  private running = 0;

  constructor(deps: TargetSideDeps) {
    this.d = deps;
  }

  /** POST restore-check: receive, verify, unpack, restore in the sandbox, answer, delete. */
  async restoreCheck(uid: string, req: IncomingMessage, log: Logger): Promise<RestoreCheckResult> {
    const c = this.d.config;
    const shaHeader = req.headers[HEADER_SHA256];
    const reqHeader = req.headers[HEADER_REQUEST];
    const lenHeader = req.headers['content-length'];
    if (typeof shaHeader !== 'string' || !isSha256Hex(shaHeader)) throw new HttpError(400, 'InvalidSpec', 'missing or malformed sha256 header');
    if (typeof reqHeader !== 'string' || reqHeader.length > 32 * 1024) throw new HttpError(400, 'InvalidSpec', 'missing request header');
    let rreq: RestoreCheckRequest;
    try {
      rreq = parseRestoreCheckRequest(decodeHeaderJson(reqHeader));
      if (rreq.sourceFacts !== undefined) rreq.sourceFacts = parseNodeFacts(rreq.sourceFacts, 'sourceFacts');
    } catch (e) {
      throw new HttpError(400, 'InvalidSpec', `bad request header: ${(e as Error).message.replace(/^manifest\.json: /, '')}`);
    }
    const declared = typeof lenHeader === 'string' && /^\d+$/.test(lenHeader) ? Number(lenHeader) : undefined;
    if (declared === undefined) throw new HttpError(411, 'InvalidSpec', 'content-length required');
    if (declared > c.maxBundleBytes) throw new HttpError(413, 'ImageTooLarge', `image set of ${declared} bytes is over the ${c.maxBundleBytes} byte cap`);
    if (rreq.sourceNodeName === c.nodeName) throw new HttpError(409, 'SameNode', 'source and target are the same node');
    const pod = await this.d.pods(rreq.namespace, rreq.podName);
    if (!pod || pod.nodeName !== rreq.sourceNodeName) throw new HttpError(403, 'PodNotOnNode', `pod ${rreq.namespace}/${rreq.podName} is not on node ${rreq.sourceNodeName}`);
    const key = targetKey(uid);
    if (this.d.ops.get(key)?.status.state === 'Running') throw new HttpError(409, 'Busy', 'a restore check with this UID is running');
    if (this.running >= c.maxConcurrentRestores) throw new HttpError(429, 'Busy', 'too many restore checks running on this node', 1);
    this.running++;
    const dir = this.d.ops.dirOf(key);
    const status: OperationStatus = { uid, role: 'target', state: 'Running', stage: 'transfer', startedAt: new Date(this.d.clock.now()).toISOString() };
    let release!: () => void;
    const op: Operation = { status, dir, done: new Promise<void>((r) => (release = r)) };
    this.d.ops.add(op);
    try {
      await rm(dir, { recursive: true, force: true });
      await mkdir(join(dir, 'bundle'), { recursive: true, mode: 0o700 });
      const limits = { maxEntries: c.maxBundleEntries ?? BUNDLE_MAX_ENTRIES, maxUnpackedBytes: c.maxUnpackedBytes ?? BUNDLE_MAX_UNPACKED_BYTES };
      const got = await receiveBundle(req, join(dir, 'bundle'), {
        declaredBytes: declared,
        maxBundleBytes: c.maxBundleBytes,
        sha256: shaHeader,
        limits,
        timeoutMs: rreq.options.timeoutMs,
      }).catch((e: unknown) => {
        if (e instanceof BundleRefused) log.warn('bundle refused', { source: rreq.sourceNodeName, reason: e.message });
        throw e;
      });
      // The shipped writable layer is unpacked by the engine with GNU tar (it keeps overlayfs xattrs): checked here
      // first, so that a device node or a link out of it is refused like any other bad member.
      if ((await lstat(join(dir, 'bundle', ROOTFS_DIFF)).catch(() => undefined))?.isFile() === true) {
        await checkRootfsDiff(join(dir, 'bundle', ROOTFS_DIFF)).catch((e: unknown) => {
          throw new BundleRefused((e as Error).message, 'a migprobe source agent ships a container writable layer of files, folders, links inside it and whiteouts only');
        });
      }
      // A RestoreOnly archive is unpacked by the engine with GNU tar: read through first, on the same terms.
      if (rreq.restoreOnly?.kind === 'archive') {
        await checkCheckpointArchive(join(dir, 'bundle', rreq.restoreOnly.name), rreq.restoreOnly.name, limits);
      }
      status.stage = 'restore';
      log.info('restore check started', { source: rreq.sourceNodeName, bytes: got.received, entries: got.entries, unpackedBytes: got.unpackedBytes });
      let result: RestoreCheckResult;
      try {
        result = await this.check(join(dir, 'bundle'), join(dir, 'work'), rreq);
      } catch (e) {
        if (e instanceof ManifestError) {
          log.warn('bundle refused', { source: rreq.sourceNodeName, reason: e.message });
          throw new BundleRefused(e.message, e.hint);
        }
        throw new HttpError(500, 'InternalError', `restore check failed on ${c.nodeName}: ${(e as Error).message}`.slice(0, 2048));
      }
      status.state = 'Done';
      log.info('restore check done', { reasons: result.reasons.map((r) => r.code) });
      return result;
    } catch (e) {
      status.state = 'Failed';
      throw e;
    } finally {
      this.running--;
      status.stage = 'done';
      status.finishedAt = new Date(this.d.clock.now()).toISOString();
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      release();
      this.d.ops.expireLater(op);
    }
  }

  /** The engine's target half of a received bundle, or the restore-only check of a received checkpoint. */
  private async check(bundleDir: string, workDir: string, rreq: RestoreCheckRequest): Promise<RestoreCheckResult> {
    const target: TargetRoot = { namespace: this.d.config.containerd.namespace };
    if (this.d.config.containerd.address !== undefined) target.containerdAddress = this.d.config.containerd.address;
    const ro = rreq.restoreOnly;
    if (ro === undefined) return await this.d.engine.targetRestoreCheck(bundleDir, rreq.options, target, rreq.sourceFacts, workDir);
    const src: CheckpointSource = ro.kind === 'archive' ? { archive: join(bundleDir, ro.name) } : { imagesDir: bundleDir };
    const v = await this.d.engine.checkRestoreOnly(src, rreq.options, target, workDir);
    const facts = await this.d.nodeFacts();
    const result: RestoreCheckResult = { reasons: v.reasons, timings: v.timings.restoreMs !== undefined ? { restoreMs: v.timings.restoreMs } : {}, criuVersion: v.criu.target ?? facts.criuVersion, facts };
    if (v.criuLogExcerpt !== undefined) result.criuLogExcerpt = v.criuLogExcerpt;
    return result;
  }
}
