// The restore check: a real `criu restore --leave-stopped` of a bundle in a sandbox (sandbox.ts). The restored
// tasks never execute one instruction: we read their CPU ticks twice with a pause between and require them
// unchanged, then kill everything and prove nothing is left.

import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import type { NodeFacts, ProbeOptions, RestoreCheckResult, TargetRoot } from './api.ts';
import type { Reason } from '../verdict.ts';
import { restoreArgs } from './criu-args.ts';
import type { Manifest } from './dump.ts';
import { readManifestFile, type ManifestOrigin } from './manifest.ts';
import { lstatInRoot } from './facts.ts';
import { checkRootfsDiff, strayNodes } from './rootfs-diff.ts';
import { createSandbox, destroySandbox, runInSandbox, sandboxPids } from './sandbox.ts';
import { cpuTicks, taskState } from './proc-task.ts';
import type { Sandbox, SandboxProcess, SandboxRun } from './sandbox.ts';
import { reasonsFromCriuLog } from './criu-log.ts';
import { reason } from '../reasons.ts';
import { criuPath, run, runOk } from './exec.ts';
import { RuntimeSocketError } from './ctr.ts';
import type { RuntimeEndpoint } from './ctr.ts';
import { imageLayers } from './image-rootfs.ts';
import { imagesWithoutFreezeState } from './cgroup-image.ts';
import { readMountpoints } from './images.ts';
import { parseNetSysctls } from './net-sysctls.ts';
import type { NetSysctls } from './net-sysctls.ts';
import type { Runner } from './exec.ts';
import { DEFAULT_CONTAINERD_ADDRESS, DEFAULT_CONTAINERD_NAMESPACE } from './container.ts';

export interface RestoreProof {
  /** pid -> utime+stime ticks, first read (host PIDs of the restored tasks). */
  cpuTicksBefore: Record<string, number>;
  cpuTicksAfter: Record<string, number>;
  /** Task states seen (expected: T, stopped). */
  states: Record<string, string>;
  /** Found by looking after teardown: processes, mounts, cgroups, netns, folders. Empty when clean. */
  leftovers: string[];
  /** Freeze states the images recorded and the restore left out (e.g. freezer.state=FROZEN of a paused dump). */
  freezeStatesNotRestored?: string[];
  /** Frozen sandbox cgroups teardown had to thaw (none when the freeze state was left out). */
  thawed?: string[];
}

export interface RestoreCheckInput {
  bundleDir: string;
  /** Image folder; defaults to <bundleDir>/images. */
  imagesDir?: string;
  options: ProbeOptions;
  target: TargetRoot;
  /** Parent folder for the sandbox. */
  workDir: string;
  facts: NodeFacts;
  criuVersion: string;
  /** Manifest override (restore-only mode builds one from the checkpoint). */
  manifest?: Manifest;
  /** The bundle was made on this node (the one-host check): its overlay paths are this node's (chooseLowerdirs). */
  sameNode?: boolean;
  /** Extra layer on top of the target root (e.g. a checkpoint's rootfs diff), top first. */
  extraLowerdirs?: string[];
  /** External key of the network namespace in the images (default: the manifest's, migprobe's own key). */
  netnsKey?: string;
  cpuCap?: boolean;
  /** Compare the source's file digests against the final root layers (top first); its reasons are added. */
  compareFiles?: (layers: readonly string[]) => Promise<Reason[]>;
  /** Pause between the two CPU tick reads, ms. */
  tickPauseMs?: number;
  /** Test hook: restore the freeze state the images record (to prove that teardown thaws and kills anyway). */
  keepFreezeState?: boolean;
}

export interface RestoreCheckOutput {
  result: RestoreCheckResult;
  proof: RestoreProof;
  run?: SandboxRun;
  /** ms since start at which each step ended (sandbox, criu, proof, teardown). */
  steps: Record<string, number>;
}

/** The bundle's manifest.json, read without following a link and checked (manifest.ts); throws ManifestError. */
export async function readManifest(bundleDir: string, origin: ManifestOrigin): Promise<Manifest> {
  return await readManifestFile(bundleDir, origin);
}

/**
 * Root filesystem layers for the sandbox overlay, top first: the container's own changes (the shipped rootfs diff),
 * over the explicit target root, else undefined (then image-rootfs.ts looks the image's layers up in this node's
 * containerd). Only when the bundle was made on this very node (`sameNode`: the one-host check) do the manifest's
 * root paths (an overlay's writable layer and image layers, or the host folder of any other root, as a plain runc
 * bundle or `--rootfs` has it) name this node's folders and may be used: on another node the same snapshot path
 * exists too, holding some other layer, and a peer's paths are never opened.
 */
export function chooseLowerdirs(
  target: TargetRoot,
  manifest: Pick<Manifest, 'rootfs'>,
  exists: (p: string) => boolean = existsSync,
  diffDir?: string,
  sameNode = false,
): string[] | undefined {
  const up = sameNode ? manifest.rootfs.upperdir : undefined;
  const diff = diffDir !== undefined ? [diffDir] : up !== undefined && exists(up) ? [up] : [];
  if (target.rootfs !== undefined) return [...diff, target.rootfs];
  const l = sameNode ? manifest.rootfs.lowerdirs : [];
  if (l.length > 0 && l.every(exists)) return [...diff, ...l];
  const dir = sameNode ? manifest.rootfs.hostDir : undefined;
  if (dir !== undefined && exists(dir)) return [...diff, dir];
  return undefined;
}

/** The type of a path as a root layer or a tmpfs tarball holds it; undefined when neither has it. */
export type PathKind = 'dir' | 'file' | undefined;

/** A plain absolute path (no `..`, nothing to normalize): only such mount points from images are looked up. Pure. */
function plainAbsolute(p: string): boolean {
  return p.startsWith('/') && posix.normalize(p) === p && !p.split('/').includes('..');
}

/** The type of `path` in the root layers (top first): the first layer that has it decides. */
export async function kindInLayers(layers: readonly string[], path: string): Promise<PathKind> {
  if (!plainAbsolute(path)) return undefined;
  for (const layer of layers) {
    // Inside the layer as a chroot would see it: a link in a (shipped) layer never leads out of it.
    const st = await lstatInRoot(layer, path);
    if (st !== undefined) return st.isDirectory() ? 'dir' : 'file';
  }
  return undefined;
}

/** GNU `tar -t -v` lines -> relative path -> kind (first column: d for a folder). Pure. */
export function kindsFromTarListing(listing: string): Map<string, 'dir' | 'file'> {
  const out = new Map<string, 'dir' | 'file'>();
  for (const line of listing.split('\n')) {
    // perms owner/group size date time name[ -> target]
    const m = /^(\S)\S*\s+\S+\s+\S+\s+\S+\s+\S+\s(.+)$/.exec(line);
    if (m === null) continue;
    const name = (m[2] ?? '').replace(/ -> .*$/, '').replace(/^\.\//, '').replace(/\/$/, '');
    if (name !== '' && name !== '.') out.set(name, m[1] === 'd' ? 'dir' : 'file');
  }
  return out;
}

/**
 * The type of a mount point that no root layer has: CRIU's tarball of the tmpfs it sits on (the kubelet's
 * /dev/termination-log is a file runc made in the container's /dev tmpfs). Reads the listing of the innermost
 * tmpfs mount above `path` that CRIU archived (tmpfs-dev-<root dev>.tar.gz.img), bounded by a timeout.
 */
export async function kindInTmpfsImages(imagesDir: string, path: string, runner: Runner = run): Promise<PathKind> {
  if (!plainAbsolute(path)) return undefined;
  let best: { mountpoint: string; tarball: string } | undefined;
  for (const m of await readMountpoints(imagesDir).catch(() => [])) {
    const mp = m.mountpoint.replace(/^\.(?=\/)/, '').replace(/\/$/, '') || '/';
    if (mp === path || !(mp === '/' || path.startsWith(`${mp}/`))) continue;
    const tarball = join(imagesDir, `tmpfs-dev-${m.rootDev}.tar.gz.img`);
    if (!existsSync(tarball)) continue;
    if (best === undefined || mp.length > best.mountpoint.length) best = { mountpoint: mp, tarball };
  }
  if (best === undefined) return undefined;
  const r = await runner('tar', ['-t', '-v', '-z', '-f', best.tarball], { timeoutMs: 30_000 });
  if (r.exitCode !== 0) return undefined;
  const rel = best.mountpoint === '/' ? path.slice(1) : path.slice(best.mountpoint.length + 1);
  return kindsFromTarListing(r.stdout).get(rel);
}

export const ROOTFS_DIFF = 'rootfs-diff.tar';

/** Unpack the bundle's rootfs diff (the container's writable layer, whiteouts included), if it has one. */
export async function unpackRootfsDiff(bundleDir: string, workDir: string, runner: Runner = run): Promise<string | undefined> {
  const tarball = join(bundleDir, ROOTFS_DIFF);
  if (!existsSync(tarball)) return undefined;
  // Checked before GNU tar (which keeps xattrs, i.e. overlayfs opaque folders) sees it: no device node but
  // whiteouts, no link or path out of the folder (rootfs-diff.ts).
  await checkRootfsDiff(tarball);
  const dir = join(workDir, 'rootfs-diff');
  await mkdir(dir, { recursive: true });
  await runOk(runner, 'tar', ['-x', '-f', tarball, '-C', dir, '--xattrs', '--xattrs-include=trusted.overlay.*', '--numeric-owner'], {
    timeoutMs: 300_000,
  });
  const stray = await strayNodes(dir);
  if (stray.length > 0) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`rootfs-diff.tar unpacked device nodes, FIFOs or sockets other than whiteouts: ${stray.slice(0, 5).join(', ')}`);
  }
  return dir;
}

/** The node's containerd, as the target root names it (defaults: the usual socket, the k8s.io namespace). */
export function runtimeEndpoint(target: TargetRoot): RuntimeEndpoint {
  return { address: target.containerdAddress ?? DEFAULT_CONTAINERD_ADDRESS, namespace: target.namespace ?? DEFAULT_CONTAINERD_NAMESPACE };
}

/** Why the image's layers were not found, and what to do, as one reason. Pure. */
export function imageUnavailableReason(ref: string, e: unknown): Reason {
  const msg = (e as Error).message.slice(0, 400);
  if (e instanceof RuntimeSocketError) {
    return reason(
      'RestoreFailed',
      `the image ${ref} cannot be looked up: ${msg}`,
      "give the node's containerd socket (migprobe --address, migprobe-agent --containerd-address), or the target root filesystem (--target-root)",
      'restore',
    );
  }
  return reason(
    'RestoreFailed',
    `the image ${ref} is not available from this node's containerd: ${msg}`,
    'pull the image on the target node (crictl pull / ctr images pull), or give the target root filesystem explicitly (--target-root)',
    'restore',
  );
}

/**
 * A restore that failed in the sandbox's own plumbing, not in CRIU: the sandbox's `unshare`/`nsenter` reported an
 * error of its own and every reason is the generic RestoreFailed (CRIU's log named no cause). Seen here about
 * once in a few hundred sandboxes under load (`unshare: sigprocmask unblock failed: Invalid argument`). Pure.
 */
export function sandboxPlumbingFailed(out: Pick<RestoreCheckOutput, 'result' | 'run'>): boolean {
  if (out.run === undefined || !/^(unshare|nsenter): /m.test(out.run.output)) return false;
  const reasons = out.result.reasons;
  return reasons.length > 0 && reasons.every((r) => r.code === 'RestoreFailed');
}

/**
 * The restore check in a fresh sandbox (below). A failure of the sandbox's plumbing says nothing about the
 * workload: the check runs once more in a new sandbox (the first is torn down and checked gone), and that answer
 * stands.
 */
export async function restoreCheck(input: RestoreCheckInput): Promise<RestoreCheckOutput> {
  const first = await restoreCheckOnce(input);
  if (!sandboxPlumbingFailed(first) || first.proof.leftovers.length > 0) return first;
  return restoreCheckOnce(input);
}

async function restoreCheckOnce(input: RestoreCheckInput): Promise<RestoreCheckOutput> {
  const started = performance.now();
  const manifest = input.manifest ?? (await readManifest(input.bundleDir, input.sameNode === true ? 'local' : 'peer'));
  const imagesDir = input.imagesDir ?? join(input.bundleDir, 'images');
  const reasons: Reason[] = [];
  const steps: Record<string, number> = {};
  const step = (name: string): void => {
    steps[name] = Math.round(performance.now() - started);
  };
  const proof: RestoreProof = { cpuTicksBefore: {}, cpuTicksAfter: {}, states: {}, leftovers: [] };
  const base = (): RestoreCheckResult => ({
    reasons,
    timings: { restoreMs: Math.round(performance.now() - started) },
    criuVersion: input.criuVersion,
    facts: input.facts,
  });
  await mkdir(input.workDir, { recursive: true });
  const diffDir = await unpackRootfsDiff(input.bundleDir, input.workDir).catch((e: unknown) => {
    reasons.push(reason('TransferFailed', `the bundle's rootfs diff does not unpack: ${(e as Error).message}`, undefined, 'restore'));
    return undefined;
  });
  let lower = chooseLowerdirs(input.target, manifest, existsSync, diffDir, input.sameNode === true);
  if (lower === undefined && manifest.imageRef !== undefined) {
    try {
      const image = await imageLayers(manifest.imageRef, runtimeEndpoint(input.target));
      lower = [...(diffDir === undefined ? [] : [diffDir]), ...image.lowerdirs];
      step('image');
    } catch (e) {
      reasons.push(imageUnavailableReason(manifest.imageRef, e));
    }
  }
  if (lower === undefined) {
    if (reasons.length === 0) {
      reasons.push(
        reason(
          'RestoreFailed',
          `no root filesystem for the restore: the image ${manifest.imageRef ?? '(unknown)'} layers are not on this node and no target rootfs was given`,
          'pull the image on the target node, or (CLI) give the root filesystem the target would use with --target-root',
          'restore',
        ),
      );
    }
    return { result: base(), proof, steps };
  }
  let netSysctls: NetSysctls;
  try {
    netSysctls = parseNetSysctls(manifest.netSysctls);
  } catch (e) {
    reasons.push(reason('TransferFailed', `the bundle's manifest: ${(e as Error).message}`, undefined, 'restore'));
    return { result: base(), proof, steps };
  }
  const lowerdirs = [...(input.extraLowerdirs ?? []), ...lower];
  if (input.compareFiles !== undefined) {
    reasons.push(...(await input.compareFiles(lowerdirs).catch((e: unknown) => [reason('InternalError', `file digests: ${(e as Error).message}`, undefined, 'compat')])));
  }
  let sb: Sandbox | undefined;
  let proc: SandboxProcess | undefined;
  let sbRun: SandboxRun | undefined;
  let excerpt: string | undefined;
  try {
    sb = await createSandbox({ workDir: input.workDir, lowerdirs, addresses: manifest.addresses.map((a) => a.cidr), netSysctls });
    step('sandbox');
    const extMounts: { key: string; path: string }[] = [];
    for (const m of manifest.externalMounts) {
      // The key goes into `--external mnt[<key>]:<path>`: nothing that could end the brackets or the argument.
      if (!/^[^[\]\0\n]{1,4096}$/.test(m.key)) throw new Error(`external mount key ${JSON.stringify(m.key.slice(0, 100))} holds a bracket or control character`);
      // A host path is used only for a bundle made on this node; a peer's paths are never opened here.
      if (input.sameNode === true && m.kind === 'bind' && m.hostPath !== undefined && existsSync(m.hostPath)) {
        extMounts.push({ key: m.key, path: m.hostPath });
      } else {
        // An empty stand-in of the same type: a file bind (the kubelet's /etc/hosts, /etc/resolv.conf,
        // /dev/termination-log) needs a file, or CRIU's move_mount fails with EINVAL.
        const p = join(sb.dir, 'ext', m.key.replace(/[^A-Za-z0-9._-]/g, '_'));
        const kind = m.file === true ? 'file' : ((await kindInLayers(lowerdirs, m.mountpoint)) ?? (await kindInTmpfsImages(imagesDir, m.mountpoint)));
        if (kind !== 'file') {
          await mkdir(p, { recursive: true });
        } else {
          await mkdir(dirname(p), { recursive: true });
          await writeFile(p, '', { flag: 'a' });
        }
        extMounts.push({ key: m.key, path: p });
      }
    }
    const logFile = join(sb.dir, 'restore.log');
    // A dump from a frozen cgroup records the freeze; restored with it, the tasks would sit frozen (state D), where
    // SIGKILL cannot end them. The sandbox restores them stopped instead (--leave-stopped).
    const unfrozen = input.keepFreezeState === true ? { dir: imagesDir, dropped: [] } : await imagesWithoutFreezeState(imagesDir, join(sb.dir, 'images'));
    if (unfrozen.dropped.length > 0) proof.freezeStatesNotRestored = unfrozen.dropped;
    const args = restoreArgs({
      imagesDir: unfrozen.dir,
      logFile,
      root: sb.root,
      cgroupRoot: sb.cgroupRoot,
      externalMounts: extMounts,
      ...(manifest.netnsExternal ? { netnsFd: 3 } : {}),
      ...(input.netnsKey === undefined ? {} : { netnsKey: input.netnsKey }),
      ...(input.cpuCap === undefined ? {} : { cpuCap: input.cpuCap }),
      pidfile: join(sb.dir, 'restored.pid'),
      options: input.options,
    });
    proc = await runInSandbox({
      sandbox: sb,
      lowerdirs,
      command: [criuPath(), ...args],
      timeoutMs: input.options.timeoutMs,
      netnsFd: manifest.netnsExternal,
    });
    sbRun = await proc.done;
    step('criu');
    const log = await readFile(logFile, 'utf8').catch(() => '');
    if (sbRun.timedOut) {
      reasons.push(reason('Timeout', `criu restore did not finish within ${input.options.timeoutMs} ms and was killed`, undefined, 'restore'));
      excerpt = log.split('\n').slice(-15).join('\n');
    } else if (sbRun.criuExitCode !== 0) {
      const parsed = reasonsFromCriuLog(log.length > 0 ? log : sbRun.output, 'restore');
      reasons.push(...parsed.reasons);
      excerpt = parsed.excerpt;
      if (parsed.reasons.length === 0) {
        reasons.push(
          reason('RestoreFailed', `criu restore exited with ${sbRun.criuExitCode ?? 'no status'}: ${sbRun.output.trim().slice(-300)}`, undefined, 'restore'),
        );
      }
    } else {
      // Restored: prove the tasks never ran.
      const pids = await sandboxPids(sb);
      if (pids.length === 0) {
        reasons.push(reason('InternalError', 'criu restore succeeded but no restored task was found in the sandbox cgroup', undefined, 'restore'));
      }
      for (const p of pids) {
        const t = cpuTicks(p);
        if (t !== undefined) proof.cpuTicksBefore[String(p)] = t;
        proof.states[String(p)] = taskState(p) ?? '?';
      }
      await new Promise((r) => setTimeout(r, input.tickPauseMs ?? 100));
      for (const p of pids) {
        const t = cpuTicks(p);
        if (t !== undefined) proof.cpuTicksAfter[String(p)] = t;
      }
      const moved = pids.filter((p) => proof.cpuTicksBefore[String(p)] !== proof.cpuTicksAfter[String(p)]);
      if (moved.length > 0) {
        reasons.push(reason('InternalError', `restored tasks ${moved.join(',')} used CPU time in the sandbox; they must stay stopped`, undefined, 'restore'));
      }
    }
    step('proof');
  } catch (e) {
    reasons.push(reason('InternalError', `restore sandbox: ${(e as Error).message}`, undefined, 'restore'));
  } finally {
    const left: string[] = [];
    if (sb !== undefined) {
      const torn = await destroySandbox(sb, proc, sbRun?.pidnsInode);
      left.push(...torn.leftovers);
      if (torn.thawed.length > 0) proof.thawed = torn.thawed;
    }
    proof.leftovers = left;
    step('teardown');
    if (left.length > 0) {
      reasons.push(reason('InternalError', `the restore sandbox left: ${left.join('; ')}`, undefined, 'restore'));
    }
  }
  const result = base();
  if (excerpt !== undefined) result.criuLogExcerpt = excerpt;
  return { result, proof, steps, ...(sbRun === undefined ? {} : { run: sbRun }) };
}
