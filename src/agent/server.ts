// The node agent's HTTP API: listening (HTTP or HTTPS), authentication of every call but /healthz, routing to the
// operation registry (operations.ts), the source side (source.ts) and the target side (target.ts), error
// answers, and a graceful close. One agent per node: it runs the source half of a probe for containers on its
// node, ships the image set to the target agent, and runs the target half for images it receives. Operations
// are keyed by the probe's UID and idempotent.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { NodeFacts } from '../engine/api.ts';
import { sleep } from '../kube/clock.ts';
import type { AgentDeps } from './deps.ts';
import { HttpError } from './errors.ts';
import { OperationRegistry } from './operations.ts';
import { isProbeUid, parseStartRequest, ValidationError } from './protocol.ts';
import { SourceSide } from './source.ts';
import { TargetSide } from './target.ts';

const MAX_JSON_BODY = 64 * 1024;

export class AgentServer {
  private readonly d: AgentDeps;
  private readonly ops: OperationRegistry;
  private readonly source: SourceSide;
  private readonly target: TargetSide;
  private server: Server | undefined;
  private facts: Promise<NodeFacts> | undefined;

  constructor(deps: AgentDeps) {
    this.d = deps;
    this.ops = new OperationRegistry({ workRoot: deps.config.workRoot, retainFinishedMs: deps.config.retainFinishedMs, clock: deps.clock });
    const nodeFacts = (): Promise<NodeFacts> => this.nodeFacts();
    this.source = new SourceSide({ ...deps, ops: this.ops, nodeFacts });
    this.target = new TargetSide({ ...deps, ops: this.ops, nodeFacts });
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
    this.source.stopIntake();
    const srv = this.server;
    const closed = srv ? new Promise<void>((r) => srv.close(() => r())) : Promise.resolve();
    srv?.closeIdleConnections();
    const stop = new AbortController();
    await Promise.race([Promise.allSettled(this.ops.running()), sleep(this.d.clock, deadlineMs, stop.signal)]);
    stop.abort();
    srv?.closeAllConnections();
    await closed;
  }

  /** Deletes what a previous run of the agent left in the work folder (after recoverFrozen has thawed it). */
  sweepWorkRoot(): Promise<string[]> {
    return this.ops.sweep();
  }

  private nodeFacts(): Promise<NodeFacts> {
    this.facts ??= this.d.engine.collectNodeFacts(this.d.config.criu).catch((e: unknown) => {
      this.facts = undefined;
      throw e;
    });
    return this.facts;
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
        sendJson(res, 200, await this.target.restoreCheck(uid, req, log));
        return;
      }
      switch (req.method) {
        case 'PUT': {
          const start = parseStartRequest(await readJson(req));
          sendJson(res, 200, await this.source.start(uid, start, log));
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
          await this.ops.forget(uid);
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
