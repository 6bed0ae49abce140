// Containers of runtimes other than the test bed's containerd k8s.io namespace, from the same test image
// (busybox + test/programs): plain runc (Debian's) on a bundle whose root is a plain folder or an overlay
// mounted by hand, containerd in its `default` namespace, and Debian's podman on a private storage folder.
// Each can also be started on a root the host cannot see (`hiddenRoot`: a tmpfs, unmounted on the host once
// the container runs; for runc's overlay, a lower folder renamed once it runs), the case where no root
// filesystem can be found from the container's mount namespace.
// Every container's remove() kills it, reaps every process it started, and removes what it made.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run, waitFor, isAlive, sleep, tiniPath } from './proc.ts';
import { testbed, testImage } from './index.ts';
import { importArchive, runContainer, removeContainer, type ContainerdState } from './containerd.ts';
import { buildImage } from './image.ts';

export interface RuntimeContainer {
  runtime: string;
  id: string;
  /** Host PID of the container's init. */
  pid: number;
  remove(): Promise<void>;
}

export interface RuntimeRunOptions {
  args: string[];
  /** Start the container on a tmpfs root that the host unmounts once it runs (no root can be found). */
  hiddenRoot?: boolean;
}

function cacheDir(): string {
  return join(process.env.MIGPROBE_CACHE ?? join(process.env.HOME ?? '/root', '.cache/migprobe'), 'images');
}

/** The test image as an OCI archive (an OCI layout, tarred) and its ref. */
async function imageArchive(): Promise<{ ref: string; tarball: string }> {
  await testImage();
  return await buildImage(cacheDir());
}

/** A folder holding the test image's root filesystem (its one layer, unpacked once per image). */
export async function testRootfs(): Promise<string> {
  const img = await imageArchive();
  const dir = join(cacheDir(), `rootfs-${img.ref.split(':').at(-1) ?? 'x'}`);
  if (existsSync(join(dir, 'bin/busybox'))) return dir;
  const tmp = `${dir}.${process.pid}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, 'layout'), { recursive: true });
  mkdirSync(join(tmp, 'rootfs'));
  await run('tar', ['-x', '-f', img.tarball, '-C', join(tmp, 'layout')]);
  const blob = (d: string): string => join(tmp, 'layout/blobs/sha256', d.replace(/^sha256:/, ''));
  const index = JSON.parse(readFileSync(join(tmp, 'layout/index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0]?.digest ?? ''), 'utf8')) as { layers: { digest: string }[] };
  for (const l of manifest.layers) await run('tar', ['-x', '-f', blob(l.digest), '-C', join(tmp, 'rootfs'), '--numeric-owner']);
  await run('mv', ['-T', join(tmp, 'rootfs'), dir]);
  await rm(tmp, { recursive: true, force: true });
  return dir;
}

/** Waits until a child process has exited (and so is reaped by Node). */
async function exited(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await Promise.race([new Promise((r) => child.once('exit', r)), sleep(timeoutMs)]);
}

/** Closes our ends of a child's stdio pipes (the container holds the other ends). */
function closeStdio(child: ChildProcess): void {
  for (const s of [child.stdin, child.stdout, child.stderr]) s?.destroy();
}

/** Copies the test rootfs into `dir` (a plain folder, or a tmpfs mounted there). */
async function fillRoot(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await run('cp', ['-a', `${await testRootfs()}/.`, dir], { timeoutMs: 120_000 });
}

/** The test bed's folder for this runtime's state (runc state, podman storage). */
async function stateDirOf(runtime: string): Promise<string> {
  const d = join((await testbed()).stateDir, runtime);
  mkdirSync(d, { recursive: true });
  return d;
}

/** Lazily unmounts `dir` on the host (the container keeps its own copy of the mount) and checks it is gone. */
async function hideMount(dir: string): Promise<void> {
  await run('umount', ['-l', dir]);
  const mi = await readFile('/proc/self/mountinfo', 'utf8');
  if (mi.split('\n').some((l) => l.split(' ')[4] === dir)) throw new Error(`${dir} is still mounted on the host`);
}

export type RuncRoot = 'folder' | 'overlay';

/**
 * A container of Debian's runc (no containerd): a bundle whose root is a plain folder (a copy of the test
 * rootfs) or an overlay mounted by hand (the test rootfs as lower, a private upper); hidden, a tmpfs folder the
 * host unmounts, or an overlay whose lower folder is renamed. runc runs in the
 * foreground as a child of this process (so the container's init is reaped by runc, runc by us), with pipes as
 * the container's stdio (CRIU cannot dump a host file as stdio).
 */
export async function runcContainer(root: RuncRoot, opts: RuntimeRunOptions): Promise<RuntimeContainer> {
  const stateRoot = join(await stateDirOf('runc'), 'state');
  const id = `mp-runc-${randomBytes(4).toString('hex')}`;
  const bundle = await mkdtemp(join(await stateDirOf('runc'), 'bundle-'));
  const rootfs = join(bundle, 'rootfs');
  const mounted: string[] = [];
  let child: ChildProcess | undefined;
  const cleanup = async (): Promise<void> => {
    await run('runc', ['--root', stateRoot, 'kill', id, 'KILL'], { allowFail: true, timeoutMs: 15_000 });
    if (child !== undefined) {
      await exited(child, 15_000);
      closeStdio(child);
    }
    await run('runc', ['--root', stateRoot, 'delete', '-f', id], { allowFail: true, timeoutMs: 15_000 });
    for (const m of mounted.reverse()) await run('umount', [m], { allowFail: true });
    await rm(bundle, { recursive: true, force: true });
  };
  try {
    mkdirSync(rootfs);
    if (opts.hiddenRoot === true && root === 'folder') {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=755', 'tmpfs', rootfs]);
      mounted.push(rootfs);
      await fillRoot(rootfs);
    } else if (root === 'folder') {
      await fillRoot(rootfs);
    } else {
      for (const d of ['upper', 'work']) mkdirSync(join(bundle, d));
      // A hidden overlay root: its lower folder is the bundle's own, renamed once the container runs.
      const lower = opts.hiddenRoot === true ? join(bundle, 'lower') : await testRootfs();
      if (opts.hiddenRoot === true) await fillRoot(lower);
      await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${join(bundle, 'upper')},workdir=${join(bundle, 'work')}`, rootfs]);
      mounted.push(rootfs);
    }
    await run('runc', ['spec', '--bundle', bundle]);
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
      process: { terminal: boolean; args: string[]; env: string[] };
      root: { path: string; readonly: boolean };
      linux: { rootfsPropagation?: string; cgroupsPath?: string };
      hostname?: string;
    };
    spec.process.terminal = false;
    spec.process.args = opts.args;
    spec.process.env = ['PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];
    spec.root = { path: 'rootfs', readonly: false };
    // The host unmounts a hidden root: no unmount may propagate into the container.
    spec.linux.rootfsPropagation = 'private';
    spec.linux.cgroupsPath = `/migprobe-runc/${id}`;
    spec.hostname = id;
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
    child = spawn('runc', ['--root', stateRoot, 'run', '--bundle', bundle, id], { stdio: ['pipe', 'pipe', 'pipe'] });
    const c = child;
    let stderr = '';
    c.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    c.stdout?.resume();
    const fatal = (): void => {
      if (c.exitCode !== null) throw new Error(`runc run exited ${c.exitCode}: ${stderr.trim()}`);
    };
    const pid = await waitFor(`runc container ${id} to run`, 20_000, async () => {
      const st = await run('runc', ['--root', stateRoot, 'state', id], { allowFail: true });
      if (st.exitCode !== 0) return undefined;
      const s = JSON.parse(st.stdout) as { pid: number; status: string };
      return s.status === 'running' && s.pid > 0 ? s.pid : undefined;
    }, fatal);
    if (opts.hiddenRoot === true && root === 'folder') {
      await hideMount(rootfs);
      mounted.pop();
    } else if (opts.hiddenRoot === true) {
      await run('mv', ['-T', join(bundle, 'lower'), join(bundle, 'lower-moved')]);
    }
    return { runtime: `runc (${root} root${opts.hiddenRoot === true ? ', hidden' : ''})`, id, pid, remove: cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** The test bed's containerd, in its `default` namespace (not k8s.io), with the test image imported there. */
export async function defaultNamespace(): Promise<ContainerdState> {
  const tb = await testbed();
  const st: ContainerdState = { ...tb.containerd, namespace: 'default' };
  const img = await imageArchive();
  await importArchive(st, img.tarball, img.ref);
  return st;
}

/**
 * A containerd container in the `default` namespace: from the test image (an overlay root from the
 * snapshotter), or with `hiddenRoot` from a root folder (`ctr run --rootfs`) on a tmpfs the host then unmounts.
 */
export async function containerdDefaultContainer(opts: RuntimeRunOptions): Promise<RuntimeContainer> {
  const st = await defaultNamespace();
  if (opts.hiddenRoot !== true) {
    const c = await runContainer(st, { args: opts.args, image: (await imageArchive()).ref });
    return { runtime: 'containerd (namespace default)', id: c.id, pid: c.pid, remove: async () => await c.remove() };
  }
  const dir = await mkdtemp(join(await stateDirOf('containerd-default'), 'root-'));
  const id = `mp-ctrd-${randomBytes(4).toString('hex')}`;
  let mounted = false;
  const cleanup = async (): Promise<void> => {
    await removeContainer(st, id);
    if (mounted) await run('umount', [dir], { allowFail: true });
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await run('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=755', 'tmpfs', dir]);
    mounted = true;
    await fillRoot(dir);
    await run(st.ctr ?? 'ctr', ['--address', st.address, '-n', st.namespace, 'run', '-d', '--cgroup', `/migprobe-ctrd/${id}`, '--rootfs', dir, id, ...opts.args]);
    const pid = await waitFor(`container ${id} to run`, 20_000, async () => {
      const out = await run(st.ctr ?? 'ctr', ['--address', st.address, '-n', st.namespace, 'tasks', 'ls']);
      const line = out.stdout.split('\n').find((l) => l.trim().split(/\s+/)[0] === id && l.includes('RUNNING'));
      return line === undefined ? undefined : Number(line.trim().split(/\s+/)[1]);
    });
    await hideMount(dir);
    mounted = false;
    return { runtime: 'containerd (namespace default, hidden tmpfs root)', id, pid, remove: cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** podman's global flags for the test bed's private storage (no systemd, no network setup, no registry). */
async function podmanGlobal(): Promise<string[]> {
  const d = await stateDirOf('podman');
  return [
    '--root', join(d, 'storage'), '--runroot', join(d, 'run'), '--tmpdir', join(d, 'tmp'), '--storage-driver', 'overlay',
    '--cgroup-manager', 'cgroupfs', '--events-backend', 'file', '--runtime', 'runc',
  ];
}

/** The test image in podman's private storage, copied from the test bed's OCI archive (never pulled). */
async function podmanImage(global: string[]): Promise<string> {
  const img = await imageArchive();
  const have = await run('podman', [...global, 'image', 'exists', img.ref], { allowFail: true });
  if (have.exitCode !== 0) await run('podman', [...global, 'pull', '-q', `oci-archive:${img.tarball}`], { timeoutMs: 300_000 });
  const named = await run('podman', [...global, 'image', 'exists', img.ref], { allowFail: true });
  if (named.exitCode !== 0) {
    const ids = (await run('podman', [...global, 'images', '-q', '--no-trunc', '--filter', 'dangling=true'])).stdout.split('\n').filter(Boolean);
    if (ids[0] === undefined) throw new Error(`podman pull oci-archive:${img.tarball} gave no image`);
    await run('podman', [...global, 'tag', ids[0], img.ref]);
  }
  return img.ref;
}

/**
 * Modest open files and processes limits: podman's defaults (nofile 1048576, nproc 32768) are above what runc
 * may set on this machine ("error setting rlimit type 7/6: operation not permitted").
 */
const ULIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096'];

/** PIDs of the live (not zombie) children of `pid`. */
async function childrenOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const t of await readdir(`/proc/${pid}/task`).catch(() => [])) {
    const list = await readFile(`/proc/${pid}/task/${t}/children`, 'utf8').catch(() => '');
    for (const c of list.split(' ').filter(Boolean).map(Number)) if (isAlive(c)) out.push(c);
  }
  return out;
}

/**
 * A container of Debian's podman (runc, cgroupfs, `--network none`, a k8s-file log so its stdio is conmon's
 * pipes), from the test image in a private storage folder (an overlay root), or with `hiddenRoot` from a
 * root folder (`--rootfs`) on a tmpfs the host then unmounts. podman's conmon outlives `podman run -d`: it
 * runs under a child subreaper of ours (tini -s) that stays until remove() has seen conmon exit, so every
 * process is reaped.
 */
export async function podmanContainer(opts: RuntimeRunOptions): Promise<RuntimeContainer> {
  const global = await podmanGlobal();
  const name = `mp-podman-${randomBytes(4).toString('hex')}`;
  const dir = opts.hiddenRoot === true ? await mkdtemp(join(await stateDirOf('podman'), 'root-')) : undefined;
  let mounted = false;
  let holder: ChildProcess | undefined;
  const cleanup = async (): Promise<void> => {
    await run('podman', [...global, 'rm', '-f', '-t', '0', name], { allowFail: true, timeoutMs: 60_000 });
    if (holder !== undefined) {
      const h = holder;
      // Wait until only the holder's `sleep` is left under the subreaper, then end it.
      const tini = h.pid ?? 0;
      await waitFor(`conmon of ${name} to exit`, 20_000, async () => ((await childrenOf(tini)).length <= 1 ? true : undefined)).catch(() => undefined);
      for (const c of await childrenOf(tini)) {
        try {
          process.kill(c, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await exited(h, 15_000);
      closeStdio(h);
    }
    if (dir !== undefined) {
      if (mounted) await run('umount', [dir], { allowFail: true });
      await rm(dir, { recursive: true, force: true });
    }
  };
  try {
    const source: string[] = [];
    if (dir !== undefined) {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=755', 'tmpfs', dir]);
      mounted = true;
      await fillRoot(dir);
      source.push('--rootfs', dir);
    } else {
      source.push(await podmanImage(global));
    }
    const runArgs = [...global, 'run', '-d', '--name', name, '--network', 'none', '--log-driver', 'k8s-file', ...ULIMITS, '--cgroup-parent', '/migprobe-podman', ...source, ...opts.args];
    // tini -s: a child subreaper; podman run -d, then `sleep` keeps it alive for conmon, which outlives podman.
    // On failure the subreaper stays too, until remove() has seen everything podman started exit.
    const script = 'podman "$@" >/dev/null || echo "podman run failed" >&2; exec sleep 2147483647';
    holder = spawn(tiniPath(), ['-s', '--', 'sh', '-c', script, 'sh', ...runArgs], { stdio: ['ignore', 'ignore', 'pipe'] });
    const h = holder;
    let stderr = '';
    h.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    const fatal = (): void => {
      if (h.exitCode !== null || stderr.includes('podman run failed')) throw new Error(`podman run failed: ${stderr.trim()}`);
    };
    const pid = await waitFor(`podman container ${name} to run`, 60_000, async () => {
      const r = await run('podman', [...global, 'inspect', '--format', '{{.State.Pid}} {{.State.Status}}', name], { allowFail: true });
      const [p, status] = r.stdout.trim().split(' ');
      return r.exitCode === 0 && status === 'running' && Number(p) > 0 ? Number(p) : undefined;
    }, fatal);
    if (dir !== undefined) {
      await hideMount(dir);
      mounted = false;
    }
    return { runtime: `podman${dir === undefined ? '' : ' (hidden tmpfs root)'}`, id: name, pid, remove: cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** PIDs of zombies whose parent is PID 1 (which does not reap here): what a test must never add. */
export async function orphanZombies(): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const stat = await readFile(`/proc/${e}/stat`, 'utf8').catch(() => '');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' && rest[1] === '1') out.push(Number(e));
  }
  return out;
}

const RUNTIME_DIRS = ['runc', 'podman', 'containerd-default'];

/**
 * What the runtimes' containers left: containers runc, podman or containerd's `default` namespace still
 * list, and mounts under the test bed's runtime folders (podman's own bind of its storage folder aside).
 */
export async function runtimeLeftovers(): Promise<string[]> {
  const tb = await testbed();
  const out: string[] = [];
  const runc = await run('runc', ['--root', join(tb.stateDir, 'runc', 'state'), 'list', '-q'], { allowFail: true });
  out.push(...runc.stdout.split('\n').filter(Boolean).map((id) => `runc container ${id}`));
  if (existsSync(join(tb.stateDir, 'podman'))) {
    const ps = await run('podman', [...(await podmanGlobal()), 'ps', '-a', '-q'], { allowFail: true });
    out.push(...ps.stdout.split('\n').filter(Boolean).map((id) => `podman container ${id}`));
  }
  const st = { ...tb.containerd, namespace: 'default' };
  const ctr = await run(st.ctr ?? 'ctr', ['--address', st.address, '-n', st.namespace, 'containers', 'ls', '-q'], { allowFail: true });
  out.push(...ctr.stdout.split('\n').filter(Boolean).map((id) => `containerd default container ${id}`));
  const storage = join(tb.stateDir, 'podman', 'storage', 'overlay');
  for (const l of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    const mp = l.split(' ')[4] ?? '';
    if (mp !== storage && RUNTIME_DIRS.some((d) => mp.startsWith(join(tb.stateDir, d) + '/'))) out.push(`mount ${mp}`);
  }
  return out;
}

/** Removes the runtimes' state: podman's storage (and its bind mount), runc's state, the image in `default`. */
export async function removeRuntimeState(): Promise<void> {
  const tb = await testbed();
  const podman = join(tb.stateDir, 'podman');
  if (existsSync(podman)) {
    const global = await podmanGlobal();
    await run('podman', [...global, 'rm', '-a', '-f', '-t', '0'], { allowFail: true, timeoutMs: 60_000 });
    await run('podman', [...global, 'rmi', '-a', '-f'], { allowFail: true, timeoutMs: 60_000 });
    await run('umount', [join(podman, 'storage', 'overlay')], { allowFail: true });
  }
  const st = { ...tb.containerd, namespace: 'default' };
  const img = await imageArchive();
  await run(st.ctr ?? 'ctr', ['--address', st.address, '-n', st.namespace, 'images', 'rm', img.ref], { allowFail: true });
  for (const d of RUNTIME_DIRS) await rm(join(tb.stateDir, d), { recursive: true, force: true });
}
