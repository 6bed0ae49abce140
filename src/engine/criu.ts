// Finding CRIU and asking it what the kernel supports. Every process call is bounded by a timeout.
// Signatures (for A2): resolveCriu(env?, runner?) -> { path, version }; criuTooOld(version) -> Reason | undefined;
// criuFeatures(path, runner?) -> Record<feature, boolean>; compareVersions(a, b) -> -1 | 0 | 1.

import { access, constants } from 'node:fs/promises';
import { delimiter, isAbsolute, join } from 'node:path';
import type { Reason } from '../verdict.ts';
import { criuPath, run } from './exec.ts';
import type { Runner } from './exec.ts';
import { reason } from '../reasons.ts';

export const CRIU_MIN_VERSION = '4.2.0';
const VERSION_TIMEOUT_MS = 10_000;
const FEATURE_TIMEOUT_MS = 15_000;

/**
 * The `criu check --feature` names migprobe asks about (all accepted by CRIU 4.2's cr-check.c). The ones in
 * DUMP_ONLY_FEATURES only matter on the node that dumps; compat.ts compares the others between nodes.
 */
export const CRIU_FEATURES = [
  'mnt_id',
  'tcp_half_closed',
  'uffd',
  'uffd-noncoop',
  'timens',
  'pidfd_store',
  'ns_pid',
  'memfd_hugetlb',
  'network_lock_nftables',
  'move_mount_set_group',
  'clone3_set_tid',
  'pagemap_scan',
  'timer_cr_ids',
  'external_net_ns',
  'cgroupns',
  'userns',
  'tun',
] as const;

export const DUMP_ONLY_FEATURES: ReadonlySet<string> = new Set(['mnt_id', 'pidfd_store', 'pagemap_scan']);

/** Parse `criu --version` output ("Version: 4.2.1" ...). */
export function parseCriuVersion(out: string): string | undefined {
  const m = /Version:\s*(\d+\.\d+(?:\.\d+)?)/.exec(out);
  return m?.[1];
}

/** Compare dotted numeric versions: -1, 0 or 1. Missing parts count as 0. */
export function compareVersions(a: string, b: string): -1 | 0 | 1 {
  const pa = a.split('.').map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split('.').map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/**
 * The lowest CRIU version accepted: CRIU_MIN_VERSION, or MIGPROBE_CRIU_MIN when that is higher (an operator
 * may demand a newer CRIU; nobody can accept an older one).
 */
export function minCriuVersion(env: NodeJS.ProcessEnv = process.env): string {
  const wanted = env['MIGPROBE_CRIU_MIN'] ?? '';
  return /^\d+\.\d+(\.\d+)?$/.test(wanted) && compareVersions(wanted, CRIU_MIN_VERSION) > 0 ? wanted : CRIU_MIN_VERSION;
}

/** CRIUTooOld when `version` is below minCriuVersion() (or unknown); `where` names the node for the message. */
export function criuTooOld(version: string, where = 'this node', min = minCriuVersion()): Reason | undefined {
  if (/^\d+\.\d+/.test(version) && compareVersions(version, min) >= 0) return undefined;
  const shown = version === '' ? 'an unknown version' : version;
  return reason('CRIUTooOld', `CRIU on ${where} is ${shown}; migprobe needs ${min} or newer`);
}

async function onPath(name: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, name);
    try {
      await access(p, constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}

/** The CRIU binary (MIGPROBE_CRIU, else `criu` on PATH) and its version. Throws when it cannot run. */
export async function resolveCriu(
  env: NodeJS.ProcessEnv = process.env,
  runner: Runner = run,
): Promise<{ path: string; version: string }> {
  const wanted = criuPath(env);
  const path = isAbsolute(wanted) || wanted.includes('/') ? wanted : await onPath(wanted, env);
  if (path === undefined) {
    throw new Error(`CRIU not found: '${wanted}' is not on PATH (set MIGPROBE_CRIU to the criu binary)`);
  }
  const r = await runner(path, ['--version'], { timeoutMs: VERSION_TIMEOUT_MS });
  const version = parseCriuVersion(r.stdout + r.stderr);
  if (r.exitCode !== 0 || version === undefined) {
    const why = r.timedOut ? 'timed out' : `exit ${r.exitCode ?? r.signal}`;
    throw new Error(`${path} --version failed (${why}): ${(r.stderr || r.stdout).trim().slice(0, 500)}`);
  }
  return { path, version };
}

/** `criu check --feature <f>` for every name in `features`, two at a time; exit 0 means supported. */
export async function criuFeatures(
  path: string,
  runner: Runner = run,
  features: readonly string[] = CRIU_FEATURES,
): Promise<Record<string, boolean>> {
  const out: Record<string, boolean> = {};
  const queue = [...features];
  const worker = async (): Promise<void> => {
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
      const r = await runner(path, ['check', '--feature', f], { timeoutMs: FEATURE_TIMEOUT_MS });
      out[f] = r.exitCode === 0 && !r.timedOut;
    }
  };
  await Promise.all([worker(), worker()]);
  const sorted: Record<string, boolean> = {};
  for (const f of features) sorted[f] = out[f] ?? false;
  return sorted;
}
