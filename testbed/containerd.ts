// containerd on a private socket and state folder, and real containers in its `k8s.io` namespace, the
// way a kubelet runs them: runc under containerd's shim, an overlay root from the snapshotter, cgroups
// under /k8s.io/<id>, and (optionally) a network namespace holding an IPv4 address on an isolated veth.
// With `cri` set it is instead a kubelet's runtime: the CRI plugin on (Debian's containerd 1.6, or containerd
// v2 from its own folder), CNI from a private config folder, the locally built pause image as sandbox.

import { mkdirSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run, startDaemon, stopDaemon, waitFor, tailOf, isAlive } from './proc.ts';
import { inNode } from './nodens.ts';

export interface ContainerdState {
  dir: string;
  address: string;
  namespace: string;
  root: string;
  state: string;
  pid: number;
  /** The `ctr` of this containerd's own version (absent: `ctr` on PATH, Debian's). */
  ctr?: string;
  /**
   * A cluster node's containerd runs in that node's mount namespace (testbed/nodens.ts), held by this
   * PID, where it has the usual paths; `address`, `root` and `state` here are the host's paths of the same.
   */
  nodeNs?: number;
}

/** A kubelet's runtime: the CRI plugin on, configured for the test bed's cluster. */
export interface CriOptions {
  /** 1: Debian's containerd 1.6 (config version 2); 2: containerd v2 (config version 3). */
  major: 1 | 2;
  sandboxImage: string;
  cniConfDir: string;
  cniBinDir: string;
}

type Paths = Pick<ContainerdState, 'dir' | 'address' | 'root' | 'state'>;

function commonToml(version: number, p: Paths, disabled: string[]): string[] {
  return [
    `version = ${version}`,
    `root = "${p.root}"`,
    `state = "${p.state}"`,
    `disabled_plugins = [${disabled.map((d) => `"${d}"`).join(', ')}]`,
    '[grpc]',
    `  address = "${p.address}"`,
    '[ttrpc]',
    `  address = "${p.address}.ttrpc"`,
    '[debug]',
    `  address = "${p.address}.debug"`,
    '[metrics]',
    '  address = ""',
    // Not /opt/containerd: nothing of a test bed outside its own folder.
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${join(p.dir, 'opt')}"`,
  ];
}

/** containerd's config.toml. Pure. */
export function containerdConfig(p: Paths, cri?: CriOptions): string {
  // The test bed's plain containerd stands in for the kubelet itself: no CRI plugin, which would want CNI.
  if (!cri) return [...commonToml(2, p, ['io.containerd.grpc.v1.cri']), ''].join('\n');
  // No CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj below the runtime's own, and every sandbox
  // fails unless the CRI plugin clamps it (restrict_oom_score_adj). cgroupfs, not systemd: cgroup v1, no systemd.
  // The stream server (exec, attach, port-forward) on a random loopback port, so two runtimes never clash.
  const runc = (section: string): string[] => [
    `  [${section}.containerd]`,
    '    default_runtime_name = "runc"',
    `    [${section}.containerd.runtimes.runc]`,
    '      runtime_type = "io.containerd.runc.v2"',
    `      [${section}.containerd.runtimes.runc.options]`,
    '        SystemdCgroup = false',
  ];
  if (cri.major === 1) {
    const cri1 = 'plugins."io.containerd.grpc.v1.cri"';
    return [
      ...commonToml(2, p, []),
      `[${cri1}]`,
      `  sandbox_image = "${cri.sandboxImage}"`,
      '  restrict_oom_score_adj = true',
      '  disable_apparmor = true',
      '  stream_server_address = "127.0.0.1"',
      '  stream_server_port = "0"',
      ...runc(cri1),
      '    snapshotter = "overlayfs"',
      `  [${cri1}.cni]`,
      `    bin_dir = "${cri.cniBinDir}"`,
      `    conf_dir = "${cri.cniConfDir}"`,
      '    max_conf_num = 1',
      '',
    ].join('\n');
  }
  const images = 'plugins."io.containerd.cri.v1.images"';
  const runtime = 'plugins."io.containerd.cri.v1.runtime"';
  return [
    // NRI would listen on the machine-wide /var/run/nri/nri.sock.
    ...commonToml(3, p, ['io.containerd.nri.v1.nri']),
    `[${images}]`,
    '  snapshotter = "overlayfs"',
    `  [${images}.pinned_images]`,
    `    sandbox = "${cri.sandboxImage}"`,
    `[${runtime}]`,
    '  restrict_oom_score_adj = true',
    '  disable_apparmor = true',
    // CreateContainer from a checkpoint image restores it with CRIU (a real migration's second half).
    '  enable_experimental_restore_via_create = true',
    ...runc(runtime),
    `  [${runtime}.cni]`,
    `    bin_dirs = ["${cri.cniBinDir}"]`,
    `    conf_dir = "${cri.cniConfDir}"`,
    '    max_conf_num = 1',
    '[plugins."io.containerd.grpc.v1.cri"]',
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    '',
  ].join('\n');
}

/**
 * Starts containerd with `criuBinDir` first on its PATH: runc runs the `criu` it finds there. `binDir` is
 * the folder of another containerd (its daemon, runc shim and ctr; default: Debian's on PATH), put next on
 * PATH so the daemon starts its own shim. `reaper` (tini) runs it as a child subreaper, so its shims,
 * which outlive their starter, are reaped there instead of by PID 1 (which does not reap here).
 */
export async function startContainerd(opts: {
  dir: string;
  criuBinDir: string;
  binDir?: string;
  cri?: CriOptions;
  reaper?: string;
  /** Run in this node mount namespace (holder PID), where `dir`/root is /var/lib/containerd and `dir`/state /run/containerd. */
  nodeNs?: number;
}): Promise<ContainerdState> {
  mkdirSync(opts.dir, { recursive: true });
  const state = join(opts.dir, 'state');
  const st: ContainerdState = {
    dir: opts.dir,
    address: opts.nodeNs ? join(state, 'containerd.sock') : join(opts.dir, 'containerd.sock'),
    namespace: 'k8s.io',
    root: join(opts.dir, 'root'),
    state,
    pid: 0,
    ...(opts.binDir ? { ctr: join(opts.binDir, 'ctr') } : {}),
    ...(opts.nodeNs ? { nodeNs: opts.nodeNs } : {}),
  };
  const view = opts.nodeNs ? { dir: opts.dir, address: '/run/containerd/containerd.sock', root: '/var/lib/containerd', state: '/run/containerd' } : st;
  writeFileSync(join(opts.dir, 'config.toml'), containerdConfig(view, opts.cri));
  st.pid = await launch(st, [opts.criuBinDir], opts.reaper);
  return st;
}

/** Starts containerd on the config.toml in `st.dir`, with `pathFirst` and its own folder first on PATH. */
async function launch(st: ContainerdState, pathFirst: string[], reaper?: string): Promise<number> {
  const binDir = st.ctr ? dirname(st.ctr) : undefined;
  const config = join(st.dir, 'config.toml');
  const log = join(st.dir, 'containerd.log');
  const path = [...pathFirst, ...(binDir ? [binDir] : []), process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'].join(':');
  const env = { ...process.env, PATH: path };
  const daemon = binDir ? join(binDir, 'containerd') : 'containerd';
  const argv = [...(reaper ? [reaper, '-s', '-g', '--'] : []), daemon, '--config', config];
  const [cmd = daemon, ...args] = st.nodeNs ? ['nsenter', ...inNode(st.nodeNs), ...argv] : argv;
  const pid = startDaemon(cmd, args, log, env);
  await waitFor('containerd to answer', 30_000, async () => {
    if (!isAlive(pid)) throw new Error(`containerd exited: ${tailOf(log, 10)}`);
    const r = await run(st.ctr ?? 'ctr', ['--address', st.address, 'version'], { allowFail: true, timeoutMs: 5000 });
    return r.exitCode === 0 ? true : undefined;
  });
  return pid;
}

/**
 * Starts a stopped containerd again on its own config (a crashed run's), so that it reconnects to the shims
 * still running and its containers can be removed through it. No-op when it is running.
 */
export async function reviveContainerd(st: ContainerdState): Promise<void> {
  if (st.pid && isAlive(st.pid)) return;
  if (!existsSync(join(st.dir, 'config.toml'))) return;
  st.pid = await launch(st, []);
}

export function ctrArgs(st: Pick<ContainerdState, 'address' | 'namespace'>, ...args: string[]): string[] {
  return ['--address', st.address, '-n', st.namespace, ...args];
}

export async function ctr(st: Pick<ContainerdState, 'address' | 'namespace' | 'ctr'>, args: string[], timeoutMs = 60_000): Promise<string> {
  return (await run(st.ctr ?? 'ctr', ctrArgs(st, ...args), { timeoutMs })).stdout;
}

/**
 * An image reference as the CRI plugin stores and the kubelet asks for it: a name without a registry is
 * Docker Hub's (`x:1` -> `docker.io/library/x:1`, `a/x:1` -> `docker.io/a/x:1`). Pure.
 */
export function normalizeRef(ref: string): string {
  const first = ref.split('/')[0] ?? '';
  const hasRegistry = ref.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasRegistry) return ref;
  return ref.includes('/') ? `docker.io/${ref}` : `docker.io/library/${ref}`;
}

interface OciIndex {
  manifests?: { digest: string; annotations?: Record<string, string> }[];
}

/** The `index.json` of an OCI archive: its tar entry name and content. */
async function archiveIndex(archive: string): Promise<{ entry: string; index: OciIndex }> {
  const entries = (await run('tar', ['-tf', archive], { timeoutMs: 120_000 })).stdout.split('\n');
  const entry = entries.find((e) => e.replace(/^\.\//, '') === 'index.json');
  if (!entry) throw new Error(`${archive} is not an OCI archive (no index.json): build it as oci-archive (buildah push IMAGE oci-archive:FILE)`);
  return { entry, index: JSON.parse((await run('tar', ['-xOf', archive, entry], { timeoutMs: 120_000 })).stdout) as OciIndex };
}

/** REF -> manifest digest of this containerd's images. */
async function imageDigests(st: ContainerdState): Promise<Map<string, string>> {
  const out = await ctr(st, ['images', 'ls']);
  const m = new Map<string, string>();
  for (const line of out.split('\n').slice(1)) {
    const [ref, , digest] = line.trim().split(/\s+/);
    if (ref && digest) m.set(ref, digest);
  }
  return m;
}

/**
 * Imports the one image of an OCI archive (an OCI layout, tarred: the test bed's own, or `buildah push ...
 * oci-archive:FILE`) as `ref` (normalized as the kubelet asks for it). Whatever name the archive carries, or
 * none, the image gets `ref`: the archive is imported from a copy whose index names it. Idempotent: an image
 * already there with the same manifest is kept; another one under `ref` is replaced. Returns the ref.
 */
export async function importArchive(st: ContainerdState, archive: string, ref: string): Promise<string> {
  const name = normalizeRef(ref);
  const { entry, index } = await archiveIndex(archive);
  const manifests = index.manifests ?? [];
  const only = manifests[0];
  if (manifests.length !== 1 || !only) {
    throw new Error(`${archive} holds ${manifests.length} manifests; importArchive takes an archive of one image (one platform)`);
  }
  const have = (await imageDigests(st)).get(name);
  if (have === only.digest) return name;
  if (have) await ctr(st, ['images', 'rm', name]);
  let source = archive;
  const work = join(st.dir, `import-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    if (only.annotations?.['io.containerd.image.name'] !== name) {
      // Unpacked and packed again: GNU tar's --delete mangles archives written by buildah.
      const layout = join(work, 'layout');
      mkdirSync(layout, { recursive: true });
      await run('tar', ['-xf', archive, '-C', layout], { timeoutMs: 300_000 });
      only.annotations = { ...only.annotations, 'io.containerd.image.name': name };
      writeFileSync(join(layout, entry), JSON.stringify(index));
      source = join(work, 'image.tar');
      await run('tar', ['-cf', source, '-C', layout, '.'], { timeoutMs: 300_000 });
    }
    await ctr(st, ['images', 'import', '--all-platforms', source], 600_000);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const after = (await imageDigests(st)).get(name);
  if (after !== only.digest) throw new Error(`image ${name} not in containerd ${st.address} after importing ${archive} (found digest ${after ?? 'none'})`);
  return name;
}

export async function importImage(st: ContainerdState, ref: string, tarball: string): Promise<void> {
  await importArchive(st, tarball, ref);
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
  const bin = st.ctr ?? 'ctr';
  await run(bin, ctrArgs(st, 'tasks', 'kill', '-a', '-s', 'SIGKILL', id), { allowFail: true, timeoutMs: 15_000 });
  await waitFor(`container ${id} to stop`, 15_000, async () => ((await taskPid(st, id)) === undefined ? true : undefined)).catch(() => undefined);
  await run(bin, ctrArgs(st, 'tasks', 'delete', '-f', id), { allowFail: true, timeoutMs: 15_000 });
  await run(bin, ctrArgs(st, 'containers', 'delete', id), { allowFail: true, timeoutMs: 15_000 });
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
  // containerd v2 keeps CRI pod sandboxes as records of their own.
  if (st.ctr) {
    const sandboxes = await run(st.ctr, ctrArgs(st, 'sandboxes', 'ls', '-q'), { allowFail: true, timeoutMs: 15_000 });
    for (const id of sandboxes.stdout.split('\n').filter(Boolean)) {
      await run(st.ctr, ctrArgs(st, 'sandboxes', 'rm', '-f', id), { allowFail: true, timeoutMs: 30_000 });
    }
  }
}

export async function stopContainerd(st: ContainerdState): Promise<void> {
  if (existsSync(st.address)) await removeAllContainers(st).catch(() => undefined);
  if (st.pid) await stopDaemon(st.pid);
}
