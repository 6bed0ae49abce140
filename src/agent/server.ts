// The node agent's HTTP API: listening (HTTP or HTTPS), authentication of every call but /healthz, routing to the
// operation registry (operations.ts), the source side (source.ts) and the target side (target.ts), error
// answers, and a graceful close. The server bounds every connection and request itself (HttpLimits): header,
// request, body-stall and keep-alive timeouts, connection and per-connection request caps, and a refusal
// closes its connection. One agent per node: it runs the source half of a probe for containers on its
// node, ships the image set to the target agent, and runs the target half for images it receives. Operations
// are keyed by the probe's UID and idempotent.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { NodeFacts } from '../engine/index.ts';
import { sleep, type Clock, type TimerHandle } from '../kube/clock.ts';
import type { AgentDeps } from './deps.ts';
import { endpointRefusal } from './authz.ts';
import { HttpError } from './errors.ts';
import { OperationRegistry } from './operations.ts';
import { isProbeUid, parseStartRequest, ValidationError } from '../agent-api/protocol.ts';
import { SourceSide } from './source.ts';
import { TargetSide } from './target.ts';

/** Largest JSON request body (the PUT's start request). */
export const MAX_JSON_BODY = 64 * 1024;

/**
 * The server's own bounds on connections and requests, whatever a caller asks for (flags in main.ts, README
 * "Security"). An upload is bounded by `requestTimeoutMs` and cut when it stalls for `bodyIdleTimeoutMs`: the
 * caller's probe timeout does not hold a connection and a work folder open.
 */
export interface HttpLimits {
  /** Time to receive a request's headers (--http-headers-timeout-seconds). */
  headersTimeoutMs: number;
  /** Time to receive a whole request, body included (--http-request-timeout-seconds): bounds every upload. */
  requestTimeoutMs: number;
  /** A request body that brings no byte for this long is cut (--http-body-idle-timeout-seconds). */
  bodyIdleTimeoutMs: number;
  /** Time to receive the PUT's small JSON body. */
  jsonBodyTimeoutMs: number;
  /** An idle kept-alive connection is closed after this (--http-keepalive-timeout-seconds). */
  keepAliveTimeoutMs: number;
  /** Open connections at once; more are dropped when accepted (--http-max-connections). */
  maxConnections: number;
  /** Requests served on one connection before it is closed. */
  maxRequestsPerSocket: number;
  /** How often the header and request timeouts are checked (their granularity). */
  timeoutCheckIntervalMs: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  headersTimeoutMs: 10_000,
  // 256 MiB (the default --max-bundle-bytes) at 0.5 MiB/s.
  requestTimeoutMs: 600_000,
  bodyIdleTimeoutMs: 30_000,
  jsonBodyTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 128,
  maxRequestsPerSocket: 100,
  timeoutCheckIntervalMs: 1_000,
};

export class AgentServer {
  private readonly d: AgentDeps;
  private readonly ops: OperationRegistry;
  private readonly source: SourceSide;
  private readonly target: TargetSide;
  private readonly limits: HttpLimits;
  private server: Server | undefined;
  private facts: Promise<NodeFacts> | undefined;

  constructor(deps: AgentDeps) {
    this.d = deps;
    this.limits = { ...DEFAULT_HTTP_LIMITS, ...deps.config.http };
    if (this.limits.headersTimeoutMs > this.limits.requestTimeoutMs) throw new Error('the headers timeout must not be longer than the request timeout (--http-headers-timeout-seconds <= --http-request-timeout-seconds)');
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
    const l = this.limits;
    const httpOpts = {
      requestTimeout: l.requestTimeoutMs,
      headersTimeout: l.headersTimeoutMs,
      keepAliveTimeout: l.keepAliveTimeoutMs,
      connectionsCheckingInterval: l.timeoutCheckIntervalMs,
    };
    const srv: Server = tls ? createTlsServer({ ...httpOpts, cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, handler) : createServer(httpOpts, handler);
    srv.maxConnections = l.maxConnections;
    srv.maxRequestsPerSocket = l.maxRequestsPerSocket;
    srv.maxHeadersCount = 64;
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
      // Not a word more from this connection: the answer closes it (sendJson), the body is never read.
      const code = authn.status === 429 ? 'Busy' : authn.status === 403 ? 'Forbidden' : 'Unauthorized';
      sendJson(res, authn.status, { code, message: authn.message }, authn.status === 429 ? { 'retry-after': String(authn.retryAfterS) } : {});
      return;
    }
    // Authorization per endpoint: restore-check is for peer agents only, the probe endpoints for the controller.
    const refused = endpointRefusal(this.d.config.callers, authn.username, m[2] !== undefined ? 'restore-check' : 'probe');
    if (refused !== undefined) {
      req.resume();
      sendJson(res, 403, { code: 'Forbidden', message: refused });
      return;
    }
    const uid = m[1] ?? '';
    const l = this.limits;
    try {
      if (!isProbeUid(uid)) throw new HttpError(400, 'InvalidSpec', 'malformed probe UID');
      const log = this.d.log.child({ probeUid: uid, caller: authn.username });
      if (m[2] !== undefined) {
        if (req.method !== 'POST') throw new HttpError(405, 'MethodNotAllowed', 'use POST');
        const stop = watchBody(req, this.d.clock, l.bodyIdleTimeoutMs);
        try {
          sendJson(res, 200, await this.target.restoreCheck(uid, req, log));
        } finally {
          stop();
        }
        return;
      }
      switch (req.method) {
        case 'PUT': {
          const stop = watchBody(req, this.d.clock, l.bodyIdleTimeoutMs, l.jsonBodyTimeoutMs);
          let body: unknown;
          try {
            body = await readJson(req);
          } finally {
            stop();
          }
          const start = parseStartRequest(body);
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
          // A running operation is cancelled first; 202 when it is still finishing (it is forgotten when done).
          if (await this.ops.forget(uid)) sendJson(res, 202, { uid, state: 'Cancelling' });
          else res.writeHead(204).end();
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

/** Answers JSON; every refusal (4xx, 5xx) also closes the connection, so a refused caller holds nothing open. */
function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  const b = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(b.length), ...(status >= 400 ? { connection: 'close' } : {}), ...headers });
  res.end(b);
}

/**
 * Cuts a request body that stalls (no byte for `idleMs`) or, with `totalMs`, takes longer than that, on the
 * injected clock: the request is destroyed, so whoever reads it fails at once. Progress is read from the socket's
 * byte count (a 'data' listener would take the body from its reader). Returns the function that stops watching.
 */
export function watchBody(req: IncomingMessage, clock: Clock, idleMs: number, totalMs?: number): () => void {
  const started = clock.now();
  let lastBytes = req.socket.bytesRead;
  let lastProgress = started;
  let handle: TimerHandle | undefined;
  let stopped = false;
  const stop = (): void => {
    stopped = true;
    if (handle !== undefined) clock.clearTimeout(handle);
  };
  const tick = (): void => {
    if (stopped || req.complete || req.destroyed) return;
    const now = clock.now();
    const bytes = req.socket.bytesRead;
    if (bytes !== lastBytes) {
      lastBytes = bytes;
      lastProgress = now;
    }
    if (now - lastProgress >= idleMs) {
      req.destroy(new Error(`request body stalled: no byte for ${idleMs} ms`));
      return;
    }
    if (totalMs !== undefined && now - started >= totalMs) {
      req.destroy(new Error(`request body not received within ${totalMs} ms`));
      return;
    }
    handle = clock.setTimeout(tick, Math.max(10, Math.min(idleMs, totalMs ?? idleMs) / 4));
  };
  handle = clock.setTimeout(tick, Math.max(10, Math.min(idleMs, totalMs ?? idleMs) / 4));
  req.once('end', stop);
  req.once('close', stop);
  return stop;
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
