// The target side of a probe on the node agent: a peer agent's POST restore-check. Checks the request (headers,
// size cap, the pod being on the claimed source node, the per-node restore limit), receives the tar.gz while
// metering its size and hashing it, unpacks it, runs the engine's target half (or the restore-only check), answers
// the result and deletes everything it received.

import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { NodeFacts, RestoreCheckResult, TargetRoot } from '../engine/api.ts';
import type { CheckpointSource } from '../engine/checkpoint.ts';
import type { Logger } from '../kube/logger.ts';
import type { AgentDeps } from './deps.ts';
import { HttpError } from './errors.ts';
import { targetKey, type Operation, type OperationRegistry } from './operations.ts';
import { decodeHeaderJson, HEADER_REQUEST, HEADER_SHA256, isSha256Hex, parseRestoreCheckRequest, type OperationStatus, type RestoreCheckRequest } from './protocol.ts';

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
    } catch (e) {
      throw new HttpError(400, 'InvalidSpec', `bad request header: ${(e as Error).message}`);
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
      const received = await this.receive(req, join(dir, 'bundle.tar.gz'), declared, shaHeader, rreq.options.timeoutMs);
      try {
        await this.d.run('tar', ['-C', join(dir, 'bundle'), '--no-same-owner', '-xzf', join(dir, 'bundle.tar.gz')], { timeoutMs: 60_000 });
      } catch (e) {
        throw new HttpError(400, 'TransferFailed', `unpacking the image set failed: ${(e as Error).message}`.slice(0, 1024));
      }
      await rm(join(dir, 'bundle.tar.gz'), { force: true });
      status.stage = 'restore';
      log.info('restore check started', { source: rreq.sourceNodeName, bytes: received });
      let result: RestoreCheckResult;
      try {
        result = await this.check(join(dir, 'bundle'), rreq);
      } catch (e) {
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

  /** Streams the body to `archive`, within the declared length and the cap, and checks its sha256. Resolves the byte count. */
  private async receive(req: IncomingMessage, archive: string, declared: number, sha256: string, timeoutMs: number): Promise<number> {
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
      await pipeline(req, meter, createWriteStream(archive, { mode: 0o600 }), { signal: AbortSignal.timeout(timeoutMs) });
    } catch (e) {
      if (e instanceof HttpError) throw e;
      throw new HttpError(400, 'TransferFailed', `receiving the image set failed: ${(e as Error).message}`);
    }
    const got = hash.digest('hex');
    if (received !== declared || got !== sha256) throw new HttpError(400, 'TransferFailed', `image set corrupted in transit (sha256 ${got}, expected ${sha256})`);
    return received;
  }

  /** The engine's target half of a received bundle, or the restore-only check of a received checkpoint. */
  private async check(bundleDir: string, rreq: RestoreCheckRequest): Promise<RestoreCheckResult> {
    const target: TargetRoot = { namespace: this.d.config.containerd.namespace };
    if (this.d.config.containerd.address !== undefined) target.containerdAddress = this.d.config.containerd.address;
    const ro = rreq.restoreOnly;
    if (ro === undefined) return await this.d.engine.targetRestoreCheck(bundleDir, rreq.options, target, rreq.sourceFacts);
    const src: CheckpointSource = ro.kind === 'archive' ? { archive: join(bundleDir, ro.name) } : { imagesDir: bundleDir };
    const v = await this.d.engine.checkRestoreOnly(src, rreq.options, target);
    const facts = await this.d.nodeFacts();
    const result: RestoreCheckResult = { reasons: v.reasons, timings: v.timings.restoreMs !== undefined ? { restoreMs: v.timings.restoreMs } : {}, criuVersion: v.criu.target ?? facts.criuVersion, facts };
    if (v.criuLogExcerpt !== undefined) result.criuLogExcerpt = v.criuLogExcerpt;
    return result;
  }
}
