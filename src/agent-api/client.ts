// HTTP client of the node agent API, used by the controller and by a source agent to reach a target agent.

import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { TokenSource } from './auth.ts';
import {
  encodeHeaderJson,
  HEADER_REQUEST,
  HEADER_SHA256,
  type ErrorBody,
  type OperationStatus,
  type RestoreCheckRequest,
  type RestoreCheckResult,
  type StartRequest,
} from './protocol.ts';

/** An answer from the agent that is not a success: `status` is the HTTP status, `body` the agent's error. */
export class AgentHttpError extends Error {
  override name = 'AgentHttpError';
  readonly status: number;
  readonly body: ErrorBody | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(status: number, body: ErrorBody | undefined, retryAfterMs?: number) {
    super(`agent answered ${status}${body ? `: ${body.code}: ${body.message}` : ''}`);
    this.status = status;
    this.body = body;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The agent could not be reached at all (connection refused, reset, timeout). */
export class AgentUnreachableError extends Error {
  override name = 'AgentUnreachableError';
}

export interface AgentClientOptions {
  tokens: TokenSource;
  /** Per-request timeout for small JSON calls. */
  timeoutMs?: number;
  /** CA for https agent URLs (PEM). */
  ca?: string;
  /** Name the agents' serving certificate carries (checked instead of the pod IP). Default `migprobe-agent`. */
  serverName?: string;
  /** TLS is configured: refuse any URL that is not https, before a token is read (it never crosses plain HTTP). */
  requireTls?: boolean;
}

interface RawResponse {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

const MAX_RESPONSE = 4 * 1024 * 1024;

export class AgentClient {
  private readonly tokens: TokenSource;
  private readonly timeoutMs: number;
  private readonly ca: string | undefined;
  private readonly serverName: string;
  private readonly requireTls: boolean;

  constructor(opts: AgentClientOptions) {
    this.tokens = opts.tokens;
    this.requireTls = opts.requireTls ?? false;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.ca = opts.ca;
    this.serverName = opts.serverName ?? 'migprobe-agent';
  }

  /** Starts (or finds, same UID) the source operation. */
  async start(baseUrl: string, uid: string, req: StartRequest): Promise<OperationStatus> {
    const body = Buffer.from(JSON.stringify(req));
    const r = await this.send(baseUrl, 'PUT', `/v1/probes/${uid}`, { 'content-type': 'application/json', 'content-length': String(body.length) }, body, this.timeoutMs);
    return parseJson<OperationStatus>(r);
  }

  /** The operation's state, or undefined when the agent does not know the UID. */
  async get(baseUrl: string, uid: string): Promise<OperationStatus | undefined> {
    try {
      const r = await this.send(baseUrl, 'GET', `/v1/probes/${uid}`, {}, undefined, this.timeoutMs);
      return parseJson<OperationStatus>(r);
    } catch (e) {
      if (e instanceof AgentHttpError && e.status === 404) return undefined;
      throw e;
    }
  }

  async delete(baseUrl: string, uid: string): Promise<void> {
    await this.send(baseUrl, 'DELETE', `/v1/probes/${uid}`, {}, undefined, this.timeoutMs);
  }

  /** Streams a tar.gz image set to the target agent and waits for its restore check. */
  async restoreCheck(
    baseUrl: string,
    uid: string,
    req: RestoreCheckRequest,
    archive: { path: string; sha256: string },
    timeoutMs: number,
    /** Cancels the upload and the wait (the source operation was deleted). */
    signal?: AbortSignal,
  ): Promise<RestoreCheckResult> {
    const size = (await stat(archive.path)).size;
    const headers = {
      'content-type': 'application/gzip',
      'content-length': String(size),
      [HEADER_SHA256]: archive.sha256,
      [HEADER_REQUEST]: encodeHeaderJson(req),
    };
    const r = await this.send(baseUrl, 'POST', `/v1/probes/${uid}/restore-check`, headers, archive.path, timeoutMs, signal);
    return parseJson<RestoreCheckResult>(r);
  }

  private async send(baseUrl: string, method: string, path: string, headers: Record<string, string>, body: Buffer | string | undefined, timeoutMs: number, cancel?: AbortSignal): Promise<RawResponse> {
    const url = new URL(path, baseUrl);
    const tls = url.protocol === 'https:';
    if (this.requireTls && !tls) throw new AgentUnreachableError(`refusing ${baseUrl}: TLS is configured, and the bearer token is never sent over plain HTTP`);
    const token = await this.tokens.token();
    const requestFn = tls ? httpsRequest : httpRequest;
    const tlsOpts = tls ? { servername: this.serverName, ...(this.ca ? { ca: this.ca } : {}) } : {};
    return new Promise<RawResponse>((resolve, reject) => {
      const req = requestFn(
        url,
        { method, headers: { ...headers, authorization: `Bearer ${token}`, accept: 'application/json' }, signal: cancel ? AbortSignal.any([AbortSignal.timeout(timeoutMs), cancel]) : AbortSignal.timeout(timeoutMs), ...tlsOpts },
        (res) => {
          const chunks: Buffer[] = [];
          let n = 0;
          res.on('data', (c: Buffer) => {
            n += c.length;
            if (n > MAX_RESPONSE) {
              res.destroy(new Error('agent response too large'));
              return;
            }
            chunks.push(c);
          });
          res.on('error', (e) => reject(new AgentUnreachableError(`reading the agent's answer failed: ${e.message}`)));
          res.on('end', () => {
            const raw: RawResponse = { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) };
            if (raw.status >= 200 && raw.status < 300) resolve(raw);
            else reject(httpError(raw));
          });
        },
      );
      req.on('error', (e) => reject(new AgentUnreachableError(`agent ${baseUrl} unreachable: ${e.message}`)));
      if (typeof body === 'string') {
        const f = createReadStream(body);
        f.on('error', (e) => req.destroy(e));
        f.pipe(req);
      } else {
        req.end(body);
      }
    });
  }
}

function httpError(r: RawResponse): AgentHttpError {
  let body: ErrorBody | undefined;
  try {
    const j = JSON.parse(r.body.toString('utf8')) as Partial<ErrorBody>;
    if (typeof j.code === 'string' && typeof j.message === 'string') body = { code: j.code, message: j.message.slice(0, 2048) };
  } catch {
    body = undefined;
  }
  const ra = r.headers['retry-after'];
  const retryAfterMs = typeof ra === 'string' && /^\d+$/.test(ra) ? Number(ra) * 1000 : undefined;
  return new AgentHttpError(r.status, body, retryAfterMs);
}

function parseJson<T>(r: RawResponse): T {
  try {
    return JSON.parse(r.body.toString('utf8')) as T;
  } catch {
    throw new AgentHttpError(r.status, { code: 'InternalError', message: 'agent answered with malformed JSON' });
  }
}
