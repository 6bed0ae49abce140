// containerd on a private socket and state folder, and real containers in its `k8s.io` namespace, the
// way a kubelet runs them: runc under containerd's shim, an overlay root from the snapshotter, cgroups
// under /k8s.io/<id>, and (optionally) a network namespace holding an IPv4 address on an isolated veth.

import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run, startDaemon, stopDaemon, waitFor, tailOf, isAlive } from './proc.ts';

export interface ContainerdState {
  dir: string;
  address: string;
  namespace: string;
  root: string;
  state: string;
  pid: number;
}

/** Starts containerd with `criuBinDir` first on its PATH: runc runs the `criu` it finds there. */
export async function startContainerd(opts: { dir: string; criuBinDir: string }): Promise<ContainerdState> {
  mkdirSync(opts.dir, { recursive: true });
  const st: ContainerdState = {
    dir: opts.dir,
    address: join(opts.dir, 'containerd.sock'),
    namespace: 'k8s.io',
    root: join(opts.dir, 'root'),
    state: join(opts.dir, 'state'),
    pid: 0,
  };
  const config = join(opts.dir, 'config.toml');
  writeFileSync(
    config,
    [
      'version = 2',
      `root = "${st.root}"`,
      `state = "${st.state}"`,
      // The CRI plugin would look for CNI; the test bed stands in for the kubelet itself.
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${st.address}"`,
      '[ttrpc]',
      `  address = "${st.address}.ttrpc"`,
      '[debug]',
      `  address = "${st.address}.debug"`,
      '[metrics]',
      '  address = ""',
      '',
    ].join('\n'),
  );
  const log = join(opts.dir, 'containerd.log');
  const env = { ...process.env, PATH: `${opts.criuBinDir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` };
  st.pid = startDaemon('containerd', ['--config', config], log, env);
  await waitFor('containerd to answer', 30_000, async () => {
    if (!isAlive(st.pid)) throw new Error(`containerd exited: ${tailOf(log, 10)}`);
    const r = await run('ctr', ['--address', st.address, 'version'], { allowFail: true, timeoutMs: 5000 });
    return r.exitCode === 0 ? true : undefined;
  });
  return st;
}

export function ctrArgs(st: Pick<ContainerdState, 'address' | 'namespace'>, ...args: string[]): string[] {
  return ['--address', st.address, '-n', st.namespace, ...args];
}

export async function ctr(st: Pick<ContainerdState, 'address' | 'namespace'>, args: string[], timeoutMs = 60_000): Promise<string> {
  return (await run('ctr', ctrArgs(st, ...args), { timeoutMs })).stdout;
}

export async function importImage(st: ContainerdState, ref: string, tarball: string): Promise<void> {
  const images = await ctr(st, ['images', 'ls', '-q']);
  if (images.split('\n').includes(ref)) return;
  await ctr(st, ['images', 'import', '--all-platforms', tarball], 180_000);
  const after = await ctr(st, ['images', 'ls', '-q']);
  if (!after.split('\n').includes(ref)) throw new Error(`image ${ref} not found after import; ctr images ls: ${after}`);
}

/** Host PID of a container's init task, or undefined when it has no running task. */
export async function taskPid(st: ContainerdState, id: string): Promise<number | undefined> {
  const out = await ctr(st, ['tasks', 'ls']);
  for (const line of out.split('\n').slice(1)) {
    const [task, pid, status] = line.trim().split(/\s+/);
    if (task === id && status === 'RUNNING' && pid) return Number(pid);
  }
  return undefined;
}

export interface RunningContainer {
  id: string;
  pid: number;
  image: string;
  netnsPath?: string;
  ip?: string;
  remove(): Promise<void>;
}

export interface RunOptions {
  args: string[];
  image: string;
  id?: string;
  env?: Record<string, string>;
  /** Give the container its own network namespace holding this IPv4 address (/24) on an isolated veth. */
  ip?: string;
  /** Extra bind mounts: host path -> container path. */
  mounts?: { host: string; container: string; readonly?: boolean }[];
}

async function makeNetns(name: string, ip: string | undefined): Promise<string> {
  await run('ip', ['netns', 'add', name]);
  await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  if (ip) {
    // The host end stays up with no address and no route: nothing in the namespace reaches anything else.
    const host = `mpv${name.slice(-8)}`;
    await run('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
    await run('ip', ['link', 'set', host, 'up']);
    await run('ip', ['-n', name, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    await run('ip', ['-n', name, 'link', 'set', 'eth0', 'up']);
  }
  return `/var/run/netns/${name}`;
}

async function removeNetns(name: string): Promise<void> {
  await run('ip', ['link', 'del', `mpv${name.slice(-8)}`], { allowFail: true });
  await run('ip', ['netns', 'del', name], { allowFail: true });
}

/** Kills, deletes and forgets a container (task, container, snapshot). Safe to call twice. */
export async function removeContainer(st: ContainerdState, id: string): Promise<void> {
  await run('ctr', ctrArgs(st, 'tasks', 'kill', '-a', '-s', 'SIGKILL', id), { allowFail: true, timeoutMs: 15_000 });
  await waitFor(`container ${id} to stop`, 15_000, async () => ((await taskPid(st, id)) === undefined ? true : undefined)).catch(() => undefined);
  await run('ctr', ctrArgs(st, 'tasks', 'delete', '-f', id), { allowFail: true, timeoutMs: 15_000 });
  await run('ctr', ctrArgs(st, 'containers', 'delete', id), { allowFail: true, timeoutMs: 15_000 });
  await removeNetns(`mp-${id.slice(-12)}`);
}

/** Starts a container in containerd's k8s.io namespace and waits for its init task. */
export async function runContainer(st: ContainerdState, opts: RunOptions): Promise<RunningContainer> {
  const id = opts.id ?? `mp-${randomBytes(6).toString('hex')}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(id)) throw new Error(`bad container id ${id}`);
  const netnsName = `mp-${id.slice(-12)}`;
  const netnsPath = await makeNetns(netnsName, opts.ip);
  const args = ['run', '-d', '--with-ns', `network:${netnsPath}`, '--cgroup', `/k8s.io/${id}`];
  for (const [k, v] of Object.entries(opts.env ?? {})) args.push('--env', `${k}=${v}`);
  for (const m of opts.mounts ?? []) {
    args.push('--mount', `type=bind,src=${m.host},dst=${m.container},options=rbind:${m.readonly ? 'ro' : 'rw'}`);
  }
  args.push(opts.image, id, ...opts.args);
  try {
    await ctr(st, args, 60_000);
    const pid = await waitFor(`container ${id} to run`, 20_000, async () => await taskPid(st, id));
    return {
      id,
      pid,
      image: opts.image,
      netnsPath,
      ...(opts.ip ? { ip: opts.ip } : {}),
      remove: async () => await removeContainer(st, id),
    };
  } catch (err) {
    await removeContainer(st, id);
    throw err;
  }
}

/** Removes every container this containerd knows in its namespace (a crashed earlier run's leftovers). */
export async function removeAllContainers(st: ContainerdState): Promise<void> {
  const ids = (await ctr(st, ['containers', 'ls', '-q'])).split('\n').filter(Boolean);
  for (const id of ids) await removeContainer(st, id);
}

export async function stopContainerd(st: ContainerdState): Promise<void> {
  if (existsSync(st.address)) await removeAllContainers(st).catch(() => undefined);
  if (st.pid) await stopDaemon(st.pid);
}
