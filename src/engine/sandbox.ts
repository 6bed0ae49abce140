// The restore sandbox: a network namespace holding the container's addresses on an isolated veth pair (both
// ends inside, no route out), a private PID namespace whose PID 1 is a tiny /bin/sh init (CRIU must not be
// PID 1: restoring the time namespace fails there), a private mount namespace whose root for the container is
// an overlay over the target's root filesystem with a fresh upper layer, and a private cgroup root. Teardown
// kills every task, thaws any frozen cgroup of the sandbox (a frozen task dies of its pending SIGKILL only once
// thawed), lets the namespaces die with their last task, removes cgroups, netns and folders, then LOOKS for
// leftovers, retrying within a named bound.

import { isCidr } from './manifest.ts';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, readFile, readdir, rm, rmdir, stat, open, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run } from './exec.ts';
import { taskState } from './proc-task.ts';
import type { Runner } from './exec.ts';
import { applyNetSysctls } from './net-sysctls.ts';
import type { NetSysctls } from './net-sysctls.ts';

/** Init script, run by /bin/sh as PID 1 of the sandbox PID namespace. $1 overlay options, $2 mount point. */
export const INIT_SCRIPT = [
  'mount -t overlay migprobe-sandbox -o "$1" "$2" || { echo "migprobe-init:overlay-failed"; exit 90; }',
  'shift 2',
  'echo "migprobe-init:ready"',
  '"$@"',
  'rc=$?',
  'echo "migprobe-criu-exit:$rc"',
  // Stay PID 1 until the engine closes stdin: when PID 1 exits, the kernel kills the whole namespace.
  'read _unused',
  'exit 0',
].join('\n');

/** Overlay mount options. Lower dirs are listed top first. Pure. */
export function overlayOptions(lowerdirs: readonly string[], upper: string, work: string): string {
  if (lowerdirs.length === 0) throw new Error('overlay needs at least one lower directory');
  for (const d of [...lowerdirs, upper, work]) {
    if (/[,:\n]/.test(d)) throw new Error(`overlay path cannot contain ',' ':' or a newline: ${d}`);
  }
  return `lowerdir=${lowerdirs.join(':')},upperdir=${upper},workdir=${work}`;
}

/** cgroup v1/v2 hierarchies mounted on this host: mount point per controller set, from /proc/self/mountinfo. Pure. */
export function cgroupMounts(mountinfo: string): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(' ')[0];
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const mp = line.slice(0, sep).split(' ')[4];
    if (mp !== undefined) out.push(mp.replace(/\\040/g, ' '));
  }
  return out;
}

export interface SandboxSpec {
  /** Parent folder; the sandbox makes its own folder inside and removes it. */
  workDir: string;
  /** Root filesystem layers for the overlay, top first. */
  lowerdirs: string[];
  /** Addresses to carry, CIDR notation (e.g. 10.0.0.5/24). */
  addresses: string[];
  /** Net sysctls to set in the sandbox's network namespace (validated again by net-sysctls.ts). */
  netSysctls?: NetSysctls;
}

export interface Sandbox {
  id: string;
  dir: string;
  root: string;
  netnsName: string;
  netnsPath: string;
  /** cgroup path under every hierarchy, e.g. /migprobe-sandbox/<id>. */
  cgroupRoot: string;
}

export interface SandboxRun {
  criuExitCode: number | null;
  timedOut: boolean;
  output: string;
  /** Host PID of the sandbox's PID 1. */
  initPid?: number;
  pidnsInode?: number;
}

export interface Leftovers {
  leftovers: string[];
  /** Frozen cgroups teardown thawed (a restore that carried a freezer state over). */
  thawed: string[];
}

export async function createSandbox(spec: SandboxSpec, runner: Runner = run): Promise<Sandbox> {
  const id = randomBytes(5).toString('hex');
  const dir = join(spec.workDir, `sandbox-${id}`);
  const sb: Sandbox = {
    id,
    dir,
    root: join(dir, 'root'),
    netnsName: `migprobe-sb-${id}`,
    netnsPath: `/var/run/netns/migprobe-sb-${id}`,
    cgroupRoot: `/migprobe-sandbox/${id}`,
  };
  for (const d of ['root', 'upper', 'work', 'ext']) await mkdir(join(dir, d), { recursive: true });
  await prepareCpusetParent();
  const ip = async (args: string[]): Promise<void> => {
    const r = await runner('ip', args, { timeoutMs: 10_000 });
    if (r.exitCode !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
  };
  // Handed to `ip addr add`: an address/prefix and nothing else (never an option, never a keyword).
  const bad = spec.addresses.find((a) => !isCidr(a));
  if (bad !== undefined) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`address ${JSON.stringify(bad.slice(0, 100))} is not an IPv4 or IPv6 address with a prefix length`);
  }
  try {
    await ip(['netns', 'add', sb.netnsName]);
    await ip(['-n', sb.netnsName, 'link', 'set', 'lo', 'up']);
    if (spec.netSysctls !== undefined) await applyNetSysctls(sb.netnsPath, spec.netSysctls, runner);
    if (spec.addresses.length > 0) {
      // Both ends of the pair live in the sandbox: the addresses exist, nothing leaves (no dummy driver here).
      await ip(['-n', sb.netnsName, 'link', 'add', 'mpsb0', 'type', 'veth', 'peer', 'name', 'mpsb1']);
      // nodad: an IPv6 address must be usable at once, not after duplicate address detection.
      for (const a of spec.addresses) await ip(['-n', sb.netnsName, 'addr', 'add', a, 'dev', 'mpsb0', ...(a.includes(':') ? ['nodad'] : [])]);
      await ip(['-n', sb.netnsName, 'link', 'set', 'mpsb0', 'up']);
      await ip(['-n', sb.netnsName, 'link', 'set', 'mpsb1', 'up']);
    }
  } catch (e) {
    if (existsSync(sb.netnsPath)) await runner('ip', ['netns', 'del', sb.netnsName], { timeoutMs: 10_000 });
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return sb;
}

/**
 * cgroup v1 cpuset: a new cgroup starts with empty cpus/mems and CRIU cannot write the restored values under a
 * parent that has none. Give the shared parent (/migprobe-sandbox) the root's cpus and mems.
 */
async function prepareCpusetParent(): Promise<void> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  for (const mp of cgroupMounts(mountinfo)) {
    if (!existsSync(join(mp, 'cpuset.cpus'))) continue;
    const parent = join(mp, 'migprobe-sandbox');
    await mkdir(parent, { recursive: true });
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const cur = (await readFile(join(parent, f), 'latin1')).trim();
      if (cur === '') await writeFile(join(parent, f), (await readFile(join(mp, f), 'latin1')).trim());
    }
  }
}

/**
 * An overlay's root directory takes its mode and owner from the upper directory, not from the image: give the
 * fresh upper dir the top layer's, or CRIU refuses a root that is not 0755 root:root (the zdtm conformance run
 * found it: `File . has bad mode 040755 (expect 040775)`).
 */
export async function matchRootAttributes(upper: string, top: string | undefined): Promise<void> {
  if (top === undefined) return;
  const st = await stat(top);
  await chmod(upper, st.mode & 0o7777);
  await chown(upper, st.uid, st.gid);
}

export interface RunInSandboxInput {
  sandbox: Sandbox;
  lowerdirs: string[];
  /** The command (CRIU and its arguments) run as a child of the sandbox's init. */
  command: string[];
  timeoutMs: number;
  /** Pass the sandbox netns to the command as fd 3. */
  netnsFd: boolean;
}

export interface SandboxProcess {
  /** Resolves when CRIU exits (or the timeout kills the sandbox). */
  done: Promise<SandboxRun>;
  /** Ends the sandbox's PID 1 (and so every task in its PID namespace). */
  kill(): void;
  child: ChildProcess;
}

/** Start CRIU under the sandbox's init. The init stays alive (holding the restored tasks) until kill(). */
export async function runInSandbox(input: RunInSandboxInput): Promise<SandboxProcess> {
  const sb = input.sandbox;
  const opts = overlayOptions(input.lowerdirs, join(sb.dir, 'upper'), join(sb.dir, 'work'));
  await matchRootAttributes(join(sb.dir, 'upper'), input.lowerdirs[0]);
  let nsfd: FileHandle | undefined;
  if (input.netnsFd) nsfd = await open(sb.netnsPath, 'r');
  const args = [
    `--net=${sb.netnsPath}`,
    'unshare',
    '--pid',
    '--fork',
    '--kill-child',
    '--mount',
    '--propagation',
    'private',
    '--mount-proc',
    '--',
    '/bin/sh',
    '-c',
    INIT_SCRIPT,
    'migprobe-init',
    opts,
    sb.root,
    ...input.command,
  ];
  const child = spawn('nsenter', args, {
    stdio: ['pipe', 'pipe', 'pipe', ...(nsfd === undefined ? [] : [nsfd.fd])],
    detached: true,
  });
  let output = '';
  let timedOut = false;
  let exitCode: number | null | undefined;
  let resolveDone: ((r: SandboxRun) => void) | undefined;
  const done = new Promise<SandboxRun>((r) => {
    resolveDone = r;
  });
  const info = (): SandboxRun => {
    const initPid = initPidOf(child.pid);
    const r: SandboxRun = { criuExitCode: exitCode ?? null, timedOut, output };
    if (initPid !== undefined) {
      r.initPid = initPid;
      const ino = pidnsInode(initPid);
      if (ino !== undefined) r.pidnsInode = ino;
    }
    return r;
  };
  const onData = (b: Buffer): void => {
    output = (output + b.toString()).slice(-64 * 1024);
    const m = /migprobe-criu-exit:(\d+)/.exec(output);
    if (m !== null && exitCode === undefined) {
      exitCode = Number(m[1]);
      clearTimeout(timer);
      resolveDone?.(info());
    }
    if (output.includes('migprobe-init:overlay-failed') && exitCode === undefined) {
      exitCode = 90;
      clearTimeout(timer);
      resolveDone?.(info());
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  child.stdin?.on('error', () => undefined);
  const killAll = (): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // gone
    }
  };
  const timer = setTimeout(() => {
    if (exitCode !== undefined) return;
    timedOut = true;
    const r = info();
    killAll();
    resolveDone?.(r);
  }, input.timeoutMs);
  child.once('close', () => {
    clearTimeout(timer);
    void nsfd?.close().catch(() => undefined);
    resolveDone?.(info());
  });
  child.once('spawn', () => {
    void nsfd?.close().catch(() => undefined);
    nsfd = undefined;
  });
  return {
    done,
    child,
    kill: () => {
      // End the init (PID 1 of the sandbox) and let `unshare` reap it: killing unshare too would orphan the init
      // to the host's PID 1, which may be slow to reap it. The whole group goes only if that does not work.
      child.stdin?.end();
      const init = initPidOf(child.pid);
      if (init !== undefined) {
        try {
          process.kill(init, 'SIGKILL');
        } catch {
          // gone
        }
      }
      const t = setTimeout(killAll, init === undefined ? 0 : 2000);
      child.once('exit', () => clearTimeout(t));
      if (child.exitCode !== null || child.signalCode !== null) clearTimeout(t);
    },
  };
}

/** Host PID of the sandbox's PID 1: the child of the `unshare` that nsenter became. */
function initPidOf(unsharePid: number | undefined): number | undefined {
  if (unsharePid === undefined) return undefined;
  try {
    const kids = readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'latin1').trim().split(/\s+/);
    const k = Number(kids[0]);
    return Number.isInteger(k) && k > 0 ? k : undefined;
  } catch {
    return undefined;
  }
}

function pidnsInode(pid: number): number | undefined {
  try {
    const l = readlinkSyncSafe(`/proc/${pid}/ns/pid`);
    const m = /\[(\d+)\]/.exec(l ?? '');
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

function readlinkSyncSafe(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined;
  }
}

/** Host PIDs of every task in the sandbox cgroup (any hierarchy that has it), deduplicated. */
export async function sandboxPids(sb: Sandbox): Promise<number[]> {
  const pids = new Set<number>();
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  for (const mp of cgroupMounts(mountinfo)) {
    const base = join(mp, sb.cgroupRoot);
    for (const dir of await walkDirs(base)) {
      try {
        for (const l of (await readFile(join(dir, 'cgroup.procs'), 'latin1')).split('\n')) {
          const n = Number(l);
          if (l !== '' && Number.isInteger(n)) pids.add(n);
        }
      } catch {
        // not a cgroup folder or gone
      }
    }
  }
  return [...pids].sort((a, b) => a - b);
}

/** All tasks (host PIDs) in a PID namespace, by inode. */
export function pidsInPidns(inode: number): number[] {
  const out: number[] = [];
  let names: string[] = [];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    const l = readlinkSyncSafe(`/proc/${n}/ns/pid`);
    if (l === `pid:[${inode}]` && taskState(Number(n)) !== 'Z') out.push(Number(n));
  }
  return out;
}

async function walkDirs(base: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      return;
    }
    out.push(d);
    for (const n of names) {
      const p = join(d, n);
      try {
        if ((await stat(p)).isDirectory()) await visit(p);
      } catch {
        // raced
      }
    }
  };
  await visit(base);
  return out;
}

/** How long teardown keeps killing, thawing and removing before it reports what is left. */
export const TEARDOWN_BOUND_MS = 5000;
/** A cgroup can stay busy for a moment after its last task is gone: rmdir is retried at least this long. */
const CGROUP_RMDIR_GRACE_MS = 1000;

/** SIGKILL every task in the sandbox cgroups and (when known) its PID namespace; returns how many were signalled. */
async function killSandboxTasks(sb: Sandbox, pidns: number | undefined): Promise<number> {
  const pids = new Set(await sandboxPids(sb));
  if (pidns !== undefined) for (const p of pidsInPidns(pidns)) pids.add(p);
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }
  return pids.size;
}

/**
 * Thaw every frozen cgroup under the sandbox root, parents first (a v1 child stays frozen while its parent is):
 * v1 `freezer.state`, v2 `cgroup.freeze`. A frozen task keeps a pending SIGKILL until it is thawed, so teardown
 * thaws after the kill: the task then dies without running. Returns the cgroups it thawed.
 */
export async function thawSandboxCgroups(sb: Sandbox): Promise<string[]> {
  const thawed: string[] = [];
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  for (const mp of cgroupMounts(mountinfo)) {
    for (const d of await walkDirs(join(mp, sb.cgroupRoot))) {
      for (const [file, frozen, thaw] of [
        ['freezer.state', (v: string) => v !== 'THAWED', 'THAWED'],
        ['cgroup.freeze', (v: string) => v === '1', '0'],
      ] as const) {
        try {
          const v = (await readFile(join(d, file), 'latin1')).trim();
          if (!frozen(v)) continue;
          await writeFile(join(d, file), thaw);
          thawed.push(`${join(d, file)}: ${v} -> ${thaw}`);
        } catch {
          // no such file in this hierarchy, or the cgroup is gone
        }
      }
    }
  }
  return thawed;
}

/**
 * Tear the sandbox down and look for anything left. `proc` is the running sandbox (if it was started),
 * `pidnsInode` the PID namespace to check for survivors. Kills, thaws, waits for every task, removes every cgroup
 * (every hierarchy), the netns and the folders, retrying within TEARDOWN_BOUND_MS before it reports leftovers.
 */
export async function destroySandbox(
  sb: Sandbox,
  proc: SandboxProcess | undefined,
  pidns: number | undefined,
  runner: Runner = run,
): Promise<Leftovers> {
  const deadline = Date.now() + TEARDOWN_BOUND_MS;
  const thawed: string[] = [];
  // 1. SIGKILL every task in the sandbox cgroup and PID namespace, end the init, then thaw.
  await killSandboxTasks(sb, pidns);
  proc?.kill();
  thawed.push(...(await thawSandboxCgroups(sb)));
  // 2. wait for the tasks to go (the mount namespace and its overlay go with the last one), killing and thawing
  //    again each round: a task may have been between cgroups, or a cgroup between states.
  while (Date.now() < deadline) {
    const alive = (await sandboxPids(sb)).length + (pidns === undefined ? 0 : pidsInPidns(pidns).length);
    const childAlive = proc !== undefined && proc.child.exitCode === null && proc.child.signalCode === null;
    if (alive === 0 && !childAlive) break;
    await new Promise((r) => setTimeout(r, 20));
    await killSandboxTasks(sb, pidns);
    thawed.push(...(await thawSandboxCgroups(sb)));
  }
  // 3. cgroups, deepest first, in every hierarchy (those mounted nowhere here too: see unmountedHierarchies).
  const rmdirDeadline = Math.max(deadline, Date.now() + CGROUP_RMDIR_GRACE_MS);
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const extra = await mountUnmountedHierarchies(sb, runner);
  for (const mp of [...cgroupMounts(mountinfo), ...extra.mounts]) {
    const dirs = (await walkDirs(join(mp, sb.cgroupRoot))).reverse();
    for (const d of dirs) {
      for (;;) {
        try {
          await rmdir(d);
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT' || Date.now() > rmdirDeadline) break;
          await new Promise((r) => setTimeout(r, 25));
        }
      }
    }
    // The shared parent (/migprobe-sandbox) stays: removing it could race with another sandbox being set up, whose
    // CRIU would then recreate it without cpus/mems (v1 cpuset) and fail.
  }
  for (const mp of extra.mounts) {
    if (existsSync(join(mp, sb.cgroupRoot))) extra.left.push(`cgroup ${sb.cgroupRoot} in hierarchy ${extra.names.get(mp) ?? mp}`);
  }
  await extra.unmount();
  // 4. netns, folders.
  if (existsSync(sb.netnsPath)) await runner('ip', ['netns', 'del', sb.netnsName], { timeoutMs: 10_000 });
  await rm(sb.dir, { recursive: true, force: true });
  return { leftovers: [...extra.left, ...(await findLeftovers(sb, pidns))], thawed };
}

/**
 * cgroup v1 hierarchies this process belongs to that are mounted nowhere in its mount namespace, as the mount
 * options that name them (e.g. `none,name=zdtmtst`). CRIU restores into them too (`--cgroup-root` applies to every
 * hierarchy), so the sandbox's cgroups there must go as well: left behind, the next dump of a task at the root of
 * that hierarchy carries them and its restore check nests a copy of them, every probe doubling the tree (the
 * zdtm conformance run grew CRIU's named hierarchies to 200,000 cgroups and every dump on the node to minutes).
 */
export function unmountedHierarchies(procCgroup: string, mountinfo: string): string[] {
  const mounted = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const [fstype, , supers] = line.slice(sep + 3).split(' ');
    if (fstype !== 'cgroup') continue;
    const keys = (supers ?? '').split(',').filter((o) => o !== 'rw' && o !== 'ro' && o !== 'none' && !o.startsWith('release_agent=') && o !== 'clone_children' && o !== 'noprefix' && o !== 'xattr');
    mounted.add(keys.sort().join(','));
  }
  const out: string[] = [];
  for (const line of procCgroup.split('\n')) {
    const parts = line.split(':');
    const ctrls = parts[1] ?? '';
    if (parts.length < 3 || ctrls === '') continue; // cgroup v2 or malformed
    const key = ctrls.split(',').sort().join(',');
    if (mounted.has(key)) continue;
    out.push(ctrls.split(',').every((c) => c.startsWith('name=')) ? `none,${ctrls}` : ctrls);
  }
  return out;
}

interface ExtraMounts {
  mounts: string[];
  names: Map<string, string>;
  left: string[];
  unmount: () => Promise<void>;
}

async function mountUnmountedHierarchies(sb: Sandbox, runner: Runner): Promise<ExtraMounts> {
  const names = new Map<string, string>();
  const out: ExtraMounts = { mounts: [], names, left: [], unmount: async () => {} };
  let hierarchies: string[];
  try {
    hierarchies = unmountedHierarchies(await readFile('/proc/self/cgroup', 'utf8'), await readFile('/proc/self/mountinfo', 'utf8'));
  } catch {
    return out;
  }
  if (hierarchies.length === 0) return out;
  const base = join(sb.dir, 'cgroup-hierarchies');
  for (const [i, opts] of hierarchies.entries()) {
    const mp = join(base, String(i));
    await mkdir(mp, { recursive: true });
    const r = await runner('mount', ['-t', 'cgroup', '-o', opts, 'migprobe-sandbox', mp], { timeoutMs: 10_000 });
    if (r.exitCode !== 0) {
      out.left.push(`cgroup ${sb.cgroupRoot} in hierarchy ${opts} (could not mount it: ${r.stderr.trim().slice(0, 200)})`);
      continue;
    }
    out.mounts.push(mp);
    names.set(mp, opts);
  }
  out.unmount = async (): Promise<void> => {
    for (const mp of out.mounts) await runner('umount', ['-l', mp], { timeoutMs: 10_000 });
    await rm(base, { recursive: true, force: true });
  };
  return out;
}

/** Look (do not assume) for anything of the sandbox that still exists. */
export async function findLeftovers(sb: Sandbox, pidns: number | undefined): Promise<string[]> {
  const left: string[] = [];
  for (const p of await sandboxPids(sb)) left.push(`process ${p} in cgroup ${sb.cgroupRoot}`);
  if (pidns !== undefined) for (const p of pidsInPidns(pidns)) left.push(`process ${p} in sandbox pid namespace`);
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  for (const line of mountinfo.split('\n')) {
    if (line.includes(sb.dir) || line.includes(sb.netnsName)) left.push(`mount: ${line}`);
  }
  for (const mp of cgroupMounts(mountinfo)) {
    if (existsSync(join(mp, sb.cgroupRoot))) left.push(`cgroup ${join(mp, sb.cgroupRoot)}`);
  }
  if (existsSync(sb.netnsPath)) left.push(`netns ${sb.netnsPath}`);
  if (existsSync(sb.dir)) left.push(`folder ${sb.dir}`);
  return left;
}
