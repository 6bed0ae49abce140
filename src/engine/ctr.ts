// containerd's `ctr`, called the one way the engine allows: the runtime socket is looked at first (a socket that
// does not exist is an instant, named error instead of ctr's 10 s dial), every operand is validated (nothing
// option-like reaches ctr), and every call has a short named bound whose message says what was waited for.

import { statSync } from 'node:fs';
import { run } from './exec.ts';
import type { RunResult, Runner } from './exec.ts';

/** Bound on one ctr call against the node's containerd (local calls answer in well under a second). */
export const CTR_TIMEOUT_MS = 10_000;
/** ctr's own bound on dialing a socket that exists but does not answer (its default is 10 s). */
export const CTR_CONNECT_TIMEOUT = '2s';

/** Where containerd listens, and the namespace to work in. */
export interface RuntimeEndpoint {
  address: string;
  namespace: string;
}

/** The runtime socket does not exist (or is not a socket): a usage problem, reported before any wait. */
export class RuntimeSocketError extends Error {
  override name = 'RuntimeSocketError';
  readonly code = 'RuntimeSocketMissing';
  readonly address: string;
  readonly problem: string;
  constructor(address: string, problem: string) {
    super(`no containerd socket at ${address} (${problem})`);
    this.address = address;
    this.problem = problem;
  }
}

/** A ctr call that did not finish within its bound. */
export class RuntimeTimeoutError extends Error {
  override name = 'RuntimeTimeoutError';
}

/** What is wrong with a runtime socket path, or undefined when it is a socket. */
export function runtimeSocketProblem(address: string, stat: (p: string) => { isSocket(): boolean } | undefined = statOrUndefined): string | undefined {
  if (!address.startsWith('/')) return 'not an absolute path';
  const st = stat(address);
  if (st === undefined) return 'it does not exist';
  if (!st.isSocket()) return 'it is not a socket';
  return undefined;
}

function statOrUndefined(p: string): { isSocket(): boolean } | undefined {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}

/** Throws RuntimeSocketError unless `address` is a unix socket. */
export function assertRuntimeSocket(address: string): void {
  const problem = runtimeSocketProblem(address);
  if (problem !== undefined) throw new RuntimeSocketError(address, problem);
}

/** Image references, digests, snapshot keys: what ctr may receive as an operand. */
const OPERAND = /^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,1023}$/;

/** `value` unchanged when it is safe to hand to ctr as an operand; throws (naming `what`) otherwise. Pure. */
export function ctrOperand(what: string, value: string): string {
  if (!OPERAND.test(value)) {
    throw new Error(`${what} ${JSON.stringify(value.slice(0, 200))} is not a valid containerd name (letters, digits and ._/:@+- only, not starting with '-')`);
  }
  return value;
}

/** The global arguments of every ctr call. Pure. */
export function ctrBaseArgs(ep: RuntimeEndpoint): string[] {
  return ['--address', ep.address, '--namespace', ctrOperand('containerd namespace', ep.namespace), '--connect-timeout', CTR_CONNECT_TIMEOUT];
}

/** What a ctr call needs from the world; tests inject their own. */
export interface CtrDeps {
  runner: Runner;
  /** The ctr binary. */
  ctr: string;
  socketProblem: (address: string) => string | undefined;
}

const defaultCtrDeps: CtrDeps = { runner: run, ctr: 'ctr', socketProblem: (a) => runtimeSocketProblem(a) };

/**
 * Run `ctr <args>` against `ep`. `what` names the call in messages (e.g. "images ls"). Throws RuntimeSocketError
 * before any wait when the socket is missing, and RuntimeTimeoutError when ctr does not finish within
 * CTR_TIMEOUT_MS; otherwise returns the result for the caller to judge (exit code, output).
 */
export async function ctrRun(ep: RuntimeEndpoint, args: readonly string[], what: string, deps: Partial<CtrDeps> = {}): Promise<RunResult> {
  const d: CtrDeps = { ...defaultCtrDeps, ...deps };
  const problem = d.socketProblem(ep.address);
  if (problem !== undefined) throw new RuntimeSocketError(ep.address, problem);
  const r = await d.runner(d.ctr, [...ctrBaseArgs(ep), ...args], { timeoutMs: CTR_TIMEOUT_MS });
  if (r.timedOut) {
    throw new RuntimeTimeoutError(`containerd at ${ep.address} did not answer \`ctr ${what}\` within ${CTR_TIMEOUT_MS / 1000} s`);
  }
  if (r.exitCode !== 0 && /failed to dial/.test(r.stderr)) {
    throw new RuntimeTimeoutError(`containerd at ${ep.address} did not accept a connection within ${CTR_CONNECT_TIMEOUT} (ctr ${what}); is containerd running there?`);
  }
  return r;
}

/** ctrRun, and throw (with ctr's own words) unless it exited 0; returns stdout. */
export async function ctrOk(ep: RuntimeEndpoint, args: readonly string[], what: string, deps: Partial<CtrDeps> = {}): Promise<string> {
  const r = await ctrRun(ep, args, what, deps);
  if (r.exitCode !== 0) throw new Error(`ctr ${what} failed: ${(r.stderr || r.stdout).trim().slice(-500)}`);
  return r.stdout;
}
