// The two halves of a probe and the one-host check built from them. Source half: resolve the container ->
// preflight (blockers: stop, nothing frozen) -> dump check -> bundle. Target half: compatibility (node facts,
// file digests vs the target root) -> restore check. `checkContainer` (the CLI) is source -> local hand-over
// (tar+gzip, as a transfer would) -> target -> composeVerdict (compose.ts); the node agents run the same halves
// with the network in between and compose with the same function. Also the restore-only mode. Everything the
// one-host check creates lives under one work dir that is always removed.
//
// For the node agent:
//   source: sourceDumpCheck(ref, opts, <workRoot>/<probe>) -> result.bundleDir = <workRoot>/<probe>/bundle:
//             images/         CRIU images without memory contents (lazy entries already removed from the pagemaps)
//             manifest.json   image ref, rootfs layers, external mount keys, addresses, file digests, source facts
//             rootfs-diff.tar the container's writable layer (absent when over ROOTFS_DIFF_CAP)
//           ship that folder (tar it), then remove <workRoot>/<probe>.
//   target: unpack it anywhere, targetRestoreCheck(dir, opts, { containerdAddress, namespace }), remove it.
//   start-up: recoverFrozen(<workRoot>, isOwnDumpFolder) (dump.ts) thaws whatever a crashed run left frozen
//             (markers only at <workRoot>/<probe>/, never in a received bundle).

import { lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerRef, DumpCheckResult, NodeFacts, ProbeOptions, RestoreCheckResult, TargetRoot } from './api.ts';
import { makeVerdict } from '../verdict.ts';
import type { NonLazyMemory, Reason, Verdict } from '../verdict.ts';
import { composeVerdict, dedupe, hasImages, type TransferOutcome } from './compose.ts';
import { resolveContainer, ContainerNotFoundError } from './container.ts';
import type { ContainerInfo } from './container.ts';
import { preflightScan } from './preflight.ts';
import { collectNodeFacts, hashMappedFiles, compareRootfs, lstatInRoot } from './facts.ts';
import type { FileDigest } from './facts.ts';
import { compareFacts, memoryNeeded } from './compat.ts';
import { resolveCriu, criuTooOld } from './criu.ts';
import { reason } from '../reasons.ts';
import { dumpCheck } from './dump.ts';
import type { DumpHooks, Manifest } from './dump.ts';
import { chooseLowerdirs, readManifest, restoreCheck, ROOTFS_DIFF, runtimeEndpoint } from './restore.ts';
import { withoutHostPaths } from './manifest.ts';
import { ROOTFS_DIFF_CAP, ROOTFS_DIFF_MAX_ENTRIES } from './rootfs-diff.ts';
import { assertRuntimeSocket } from './ctr.ts';
import type { RestoreProof } from './restore.ts';
import { addressesOf, subjectFromContainer } from './subject.ts';
import { readLinkRemaps, stageLinkRemaps } from './link-remap.ts';
import { readNetSysctls } from './net-sysctls.ts';
import { openCheckpoint } from './checkpoint.ts';
import type { CheckpointSource } from './checkpoint.ts';
import { run, runOk } from './exec.ts';
import type { Runner } from './exec.ts';

/** Everything the orchestrator calls that touches the world, injectable for tests. */
export interface ProbeDeps {
  resolveCriu: () => Promise<{ path: string; version: string }>;
  resolveContainer: (ref: ContainerRef) => Promise<ContainerInfo>;
  preflightScan: (info: ContainerInfo, opts: ProbeOptions) => Promise<{ reasons: Reason[]; rssBytes: number; nonLazy?: NonLazyMemory }>;
  collectNodeFacts: (criu: { path: string; version: string }) => Promise<NodeFacts>;
  hashMappedFiles: (info: ContainerInfo) => Promise<FileDigest[]>;
  compareRootfs: (digests: readonly FileDigest[], rootDir: string) => Promise<Reason[]>;
  runner: Runner;
  /** Test hooks for the dump (fault injection). */
  dumpHooks?: DumpHooks;
  /** Collect the source node facts after the dump instead of beside it (default false). */
  factsAfterDump?: boolean;
  /** Make tmpfs mounts external when safe (default true). */
  externalTmpfs?: boolean;
}

/** Runs a command at the lowest CPU priority (node facts run beside a dump and must not lengthen the freeze). */
export const niceRunner: Runner = (cmd, args, opts) => run('nice', ['-n', '19', cmd, ...args], opts);

export const defaultProbeDeps: ProbeDeps = {
  resolveCriu: () => resolveCriu(),
  resolveContainer: (ref) => resolveContainer(ref),
  preflightScan: (info, opts) => preflightScan(info, opts),
  collectNodeFacts: (criu) => collectNodeFacts(criu.path, { runner: niceRunner }),
  hashMappedFiles: (info) => hashMappedFiles(info),
  compareRootfs: (digests, rootDir) => compareRootfs(digests, rootDir),
  runner: run,
};

/** Extra detail the CLI's --verbose and the tests use; the Verdict stays the public contract. */
export interface ProbeDetail {
  restoreProof?: RestoreProof;
  dumpRecovery?: string[];
  pagemap?: Manifest['pagemap'];
  /** Link remaps (options.linkRemap) that could not go into the rootfs diff, with why. */
  linkRemapsMissing?: string[];
}

async function newWorkDir(parent: string | undefined): Promise<string> {
  if (parent !== undefined) {
    await mkdir(parent, { recursive: true });
    return await mkdtemp(join(parent, 'probe-'));
  }
  return await mkdtemp(join(tmpdir(), 'migprobe-'));
}

/** Runs `fn` in a fresh work folder under `parent` (default the OS temp folder), removed when `fn` settles. */
async function inWorkDir<T>(parent: string | undefined, fn: (work: string) => Promise<T>): Promise<T> {
  const work = await newWorkDir(parent);
  try {
    return await fn(work);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** A one-host check's frame: its start time, its dependencies, and a fresh work folder removed at the end. */
async function oneHost<T>(io: OneHostIo, fn: (work: string, deps: ProbeDeps, started: number) => Promise<T>): Promise<T> {
  const started = performance.now();
  return await inWorkDir(io.workDir, async (work) => await fn(work, io.deps ?? defaultProbeDeps, started));
}

/** The one-host checks' I/O: their work folder's parent, injected dependencies, and what to report beyond the verdict. */
export interface OneHostIo {
  workDir?: string;
  deps?: ProbeDeps;
  detail?: ProbeDetail;
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The one-host check finds no root filesystem for its restore check: a usage problem (CLI exit 2), not a verdict. */
export class RootfsNotFoundError extends Error {
  override name = 'RootfsNotFoundError';
}

/**
 * Throws RootfsNotFoundError unless the one-host check's restore has a root filesystem: the explicit target root,
 * the container's own root as its mount namespace shows it (an overlay's layers, or the host folder of any other
 * root: a plain runc bundle, a `--rootfs` folder), or its image, to be looked up in containerd.
 */
export function assertOneHostRoot(info: Pick<ContainerInfo, 'initPid' | 'rootfs' | 'image'>, target: TargetRoot, exists: (p: string) => boolean = existsSync): void {
  const { lowerdirs, upperdir, hostDir, fstype, source } = info.rootfs;
  const rootfs = { lowerdirs, ...(upperdir === undefined ? {} : { upperdir }), ...(hostDir === undefined ? {} : { hostDir }) };
  if (chooseLowerdirs(target, { rootfs }, exists, undefined, true) !== undefined || info.image !== undefined) return;
  const seen = lowerdirs.length > 0 ? `an overlay whose layers ${lowerdirs.join(':')} are not all on this host` : `${fstype} ${source}, which this host does not see as a folder`;
  throw new RootfsNotFoundError(
    `no root filesystem for the restore check of PID ${info.initPid}: its root is ${seen}, and no image is known; ` +
      'give the root filesystem the target would use with --target-root DIR',
  );
}

/** Reasons for a failure to even start (container gone, CRIU missing): setup-phase verdict material. */
function setupReason(e: unknown): Reason {
  if (e instanceof ContainerNotFoundError) return reason('ContainerNotFound', e.message, undefined, 'setup');
  return reason('InternalError', errMessage(e), undefined, 'setup');
}

/** The preflight's non-lazy memory as a sizes fragment (absent when a fake preflight gave none). */
function nonLazyOf(pre: { nonLazy?: NonLazyMemory }): { nonLazyMemory?: NonLazyMemory } {
  return pre.nonLazy === undefined ? {} : { nonLazyMemory: pre.nonLazy };
}

interface SourceOutcome {
  /** `bundleDir` is set exactly when the dump produced images (see hasImages in compose.ts). */
  result: DumpCheckResult;
  info?: ContainerInfo;
  /** Source node facts, possibly still being collected (sourceDumpCheck writes them into the manifest). */
  sourceFacts?: Promise<NodeFacts | undefined>;
  detail: ProbeDetail;
}

/**
 * `check` runs on the resolved container before anything else and may throw (the one-host check's root
 * filesystem: a usage error, thrown to the caller).
 */
async function runSource(ref: ContainerRef, opts: ProbeOptions, workDir: string, deps: ProbeDeps, check?: (info: ContainerInfo) => void, signal?: AbortSignal): Promise<SourceOutcome> {
  const detail: ProbeDetail = {};
  let criu: { path: string; version: string };
  try {
    criu = await deps.resolveCriu();
  } catch (e) {
    return { result: { reasons: [setupReason(e)], timings: {}, sizes: {}, criuVersion: '' }, detail };
  }
  const old = criuTooOld(criu.version);
  if (old !== undefined) {
    return { result: { reasons: [{ ...old, phase: 'setup' }], timings: {}, sizes: {}, criuVersion: criu.version }, detail };
  }
  // Node facts take a few hundred ms of `criu check` runs. They start now and run beside the rest, the dump
  // included: the default deps run them at nice 19, so they take only CPU the dump leaves (measured with 1 GiB,
  // 8 runs each: freeze median 168 ms started now vs 200 ms started after the dump, i.e. no worse; time to
  // verdict 45 ms shorter). `factsAfterDump` starts them once the workload is released instead.
  const collect = (): Promise<NodeFacts | undefined> =>
    deps.collectNodeFacts(criu).then(
      (f) => f,
      () => undefined,
    );
  let factsP: Promise<NodeFacts | undefined> | undefined = deps.factsAfterDump === true ? undefined : collect();
  let info: ContainerInfo;
  try {
    info = await deps.resolveContainer(ref);
  } catch (e) {
    return { result: { reasons: [setupReason(e)], timings: {}, sizes: {}, criuVersion: criu.version }, detail, ...(factsP === undefined ? {} : { sourceFacts: factsP }) };
  }
  if (check !== undefined) {
    try {
      check(info);
    } catch (e) {
      await factsP;
      throw e;
    }
  }
  const t0 = performance.now();
  const pre = await deps.preflightScan(info, opts);
  const preflightMs = Math.round(performance.now() - t0);
  if (pre.reasons.length > 0) {
    // Every blocker at once, and nothing frozen.
    return {
      result: { reasons: pre.reasons, timings: { preflightMs }, sizes: { workloadRssBytes: pre.rssBytes, ...nonLazyOf(pre) }, criuVersion: criu.version },
      info,
      detail,
      ...(factsP === undefined ? {} : { sourceFacts: factsP }),
    };
  }
  const fileDigests = await deps.hashMappedFiles(info);
  signal?.throwIfAborted();
  const subject = subjectFromContainer(info, { externalTmpfs: deps.externalTmpfs !== false });
  // as the pod spec gives them to the target's network namespace (securityContext.sysctls)
  const netSysctls = info.network.hostNetwork ? {} : await readNetSysctls(info.network.netnsPath, deps.runner);
  const out = await dumpCheck({
    subject,
    options: opts,
    workDir,
    criuVersion: criu.version,
    manifest: {
      ...(info.image === undefined ? {} : { imageRef: info.image }),
      rootfs: {
        lowerdirs: info.rootfs.lowerdirs,
        ...(info.rootfs.upperdir === undefined ? {} : { upperdir: info.rootfs.upperdir }),
        ...(info.rootfs.hostDir === undefined ? {} : { hostDir: info.rootfs.hostDir }),
      },
      addresses: addressesOf(info),
      ...(Object.keys(netSysctls).length === 0 ? {} : { netSysctls }),
      fileDigests,
      workloadRssBytes: pre.rssBytes,
    },
    ...(deps.dumpHooks === undefined ? {} : { hooks: deps.dumpHooks }),
    ...(signal === undefined ? {} : { signal }),
  });
  // Cancelled: the dump has made sure the workload runs; nothing more is done.
  signal?.throwIfAborted();
  // Images exist exactly when CRIU's dump exited 0 within its timeout, whatever blockers were also found (a freeze
  // over budget, for one): then the bundle stays and the target half runs (compose.ts says why).
  const dumped = out.info.criuExitCode === 0 && !out.info.timedOut;
  if (!dumped) delete out.result.bundleDir;
  if (out.result.bundleDir !== undefined) {
    // CRIU removed its link remaps again after the --leave-running dump: copied now, from the fds the workload
    // holds, into the rootfs diff, where a real migration's dump leaves them (link-remap.ts)
    const stage = join(workDir, 'link-remaps');
    const remaps =
      opts.linkRemap === true
        ? await readLinkRemaps(join(out.result.bundleDir, 'images'))
            .then((r) => stageLinkRemaps(r, subject.pids, stage, ROOTFS_DIFF_CAP))
            .catch((e: unknown) => ({ staged: [], missing: [`link remaps: ${errMessage(e)}`], bytes: 0 }))
        : undefined;
    if (remaps !== undefined && remaps.missing.length > 0) detail.linkRemapsMissing = remaps.missing;
    const extra = remaps !== undefined && remaps.staged.length > 0 ? stage : undefined;
    if (info.rootfs.upperdir !== undefined || extra !== undefined) await shipRootfsDiff(info.rootfs.upperdir, out.result.bundleDir, deps.runner, ROOTFS_DIFF_CAP, extra);
  }
  detail.dumpRecovery = out.info.recovery;
  if (out.info.pagemap !== undefined) detail.pagemap = out.info.pagemap;
  out.result.timings.preflightMs = preflightMs;
  out.result.sizes.workloadRssBytes = pre.rssBytes;
  Object.assign(out.result.sizes, nonLazyOf(pre));
  // The facts may still be coming: sourceDumpCheck waits for them and writes them into the manifest before the
  // bundle leaves; the one-host check hands them to the target side directly (never rewriting the manifest while
  // the transfer packs it).
  factsP ??= collect();
  return { result: out.result, info, sourceFacts: factsP, detail };
}

/** Merge fields into a bundle's manifest.json (written to a temporary file, then renamed: readers see old or new). */
export async function updateManifest(bundleDir: string, fields: Partial<Manifest>): Promise<void> {
  const path = join(bundleDir, 'manifest.json');
  const manifest = { ...(JSON.parse(await readFile(path, 'utf8')) as Manifest), ...fields };
  await writeFile(`${path}.tmp`, JSON.stringify(manifest, null, 2));
  await rename(`${path}.tmp`, path);
}


/**
 * Ship the container's writable layer (files it created or changed, whiteouts included) in the bundle, as a
 * migration would: the target stacks it over the image. Taken after the dump, while the workload runs. `extra`: a
 * folder of files that the real migration's writable layer would hold as well (link remaps), added on top.
 */
export async function shipRootfsDiff(upperdir: string | undefined, bundleDir: string, runner: Runner, cap = ROOTFS_DIFF_CAP, extra?: string): Promise<void> {
  const tarball = join(bundleDir, ROOTFS_DIFF);
  // Measured before tarring (walks that stop at the cap): a big layer is never copied just to be thrown away.
  const sizes = await Promise.all([upperdir, extra].flatMap((d) => (d === undefined ? [] : [tarSizeUpTo(d, cap)])));
  const estimate = sizes.includes(undefined) ? undefined : sizes.reduce<number>((a, b) => a + (b ?? 0), 0);
  if (estimate === undefined || estimate > cap) {
    await updateManifest(bundleDir, { rootfsDiff: { omittedBytes: estimate ?? -1 } });
    return;
  }
  const members = [
    ...(upperdir === undefined ? [] : ['-C', upperdir, '.']),
    // with a writable layer, by name: its own root folder keeps its owner and mode
    ...(extra === undefined ? [] : ['-C', extra, ...(upperdir === undefined ? ['.'] : (await readdir(extra)).map((n) => `./${n}`))]),
  ];
  const r = await runner('tar', ['-c', '-f', tarball, '--xattrs', '--xattrs-include=trusted.overlay.*', '--numeric-owner', ...members], {
    timeoutMs: 120_000,
  });
  const bytes = r.exitCode === 0 ? (await stat(tarball)).size : -1;
  if (bytes < 0 || bytes > cap) {
    await rm(tarball, { force: true });
    await updateManifest(bundleDir, { rootfsDiff: { omittedBytes: bytes } });
  } else {
    await updateManifest(bundleDir, { rootfsDiff: { bytes } });
  }
}

/**
 * The size a tar of `dir` would have (512-byte header per entry, contents rounded up to 512), counted by a walk
 * that stops as soon as it passes `cap` bytes or ROOTFS_DIFF_MAX_ENTRIES entries (then: a number above `cap`).
 * Links are not followed. Undefined when `dir` cannot be read.
 */
export async function tarSizeUpTo(dir: string, cap: number, maxEntries = ROOTFS_DIFF_MAX_ENTRIES): Promise<number | undefined> {
  let bytes = 1024;
  let entries = 0;
  const stack = [dir];
  try {
    while (stack.length > 0) {
      const d = stack.pop() ?? '';
      for (const e of await readdir(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        entries++;
        bytes += 512;
        if (e.isDirectory()) stack.push(p);
        else if (e.isFile()) bytes += Math.ceil((await lstat(p)).size / 512) * 512;
        if (bytes > cap || entries > maxEntries) return Math.max(bytes, cap + 1);
      }
    }
  } catch {
    return undefined;
  }
  return bytes;
}

/**
 * Source half, for the node agent: preflight + dump check. The bundle lands in `<workDir>/bundle` (and
 * `bundleDir` is set) when the dump produced images; the caller owns workDir.
 */
/** The source half for the node agent; `signal` cancels it (a cancelled dump leaves the workload running, then throws). */
export async function sourceDumpCheck(ref: ContainerRef, opts: ProbeOptions, workDir: string, deps: ProbeDeps = defaultProbeDeps, signal?: AbortSignal): Promise<DumpCheckResult> {
  await mkdir(workDir, { recursive: true });
  const s = await runSource(ref, opts, workDir, deps, undefined, signal);
  const facts = await s.sourceFacts;
  if (hasImages(s.result)) {
    // The bundle leaves this node: no host path of ours goes with it (the target never uses one anyway, and
    // refuses a manifest that names any).
    const shipped = withoutHostPaths(await readManifest(s.result.bundleDir, 'local'));
    await updateManifest(s.result.bundleDir, { rootfs: shipped.rootfs, externalMounts: shipped.externalMounts, ...(facts === undefined ? {} : { sourceFacts: facts }) });
  }
  return s.result;
}

interface TargetOutcome {
  result: RestoreCheckResult;
  proof?: RestoreProof;
}

async function runTarget(
  bundleDir: string,
  opts: ProbeOptions,
  target: TargetRoot,
  sourceFacts: NodeFacts | Promise<NodeFacts | undefined> | undefined,
  deps: ProbeDeps,
  workDir: string,
  /** This node's facts when already being collected (one-host check: source and target are this node). */
  sameNodeFacts?: Promise<NodeFacts | undefined>,
): Promise<TargetOutcome> {
  const started = performance.now();
  const empty: NodeFacts = { hostname: '', arch: '', kernelRelease: '', criuVersion: '', criuFeatures: {}, memAvailableBytes: 0, cpu: { vendor: '', model: '', flags: [] } };
  let criu: { path: string; version: string };
  try {
    criu = await deps.resolveCriu();
  } catch (e) {
    return { result: { reasons: [setupReason(e)], timings: {}, criuVersion: '', facts: empty } };
  }
  // A bundle from another node is a peer's (its manifest may name no host path); the one-host check's is ours.
  const manifest = await readManifest(bundleDir, sameNodeFacts !== undefined ? 'local' : 'peer');
  // File digests against the root as the target has it (its layers, the container's own changes on top), then
  // the restore check. Neither needs the node facts: collect them meanwhile.
  const compareFiles = async (layers: readonly string[]): Promise<Reason[]> => {
    const out: Reason[] = [];
    if (manifest.fileDigests.length === 0) return out;
    for (const [layer, digests] of await digestsByLayer(manifest.fileDigests, layers)) {
      out.push(...(await deps.compareRootfs(digests, layer)));
    }
    return out;
  };
  const restoreP = restoreCheck({
    bundleDir,
    options: opts,
    target,
    workDir: join(workDir, 'restore'),
    facts: empty,
    criuVersion: criu.version,
    manifest,
    compareFiles,
    sameNode: sameNodeFacts !== undefined,
  });
  let facts: NodeFacts;
  try {
    facts = (await sameNodeFacts) ?? (await deps.collectNodeFacts(criu));
  } catch (e) {
    await restoreP;
    return { result: { reasons: [setupReason(e)], timings: {}, criuVersion: criu.version, facts: empty } };
  }
  const src = (await sourceFacts) ?? manifest.sourceFacts;
  const reasons: Reason[] = [];
  if (src !== undefined) reasons.push(...compareFacts(src, facts, manifest.workloadRssBytes ?? 0));
  const r = await restoreP;
  reasons.push(...r.result.reasons);
  const result: RestoreCheckResult = {
    reasons: dedupe(reasons),
    timings: { restoreMs: Math.round(performance.now() - started) },
    criuVersion: criu.version,
    facts,
    ...(r.result.criuLogExcerpt === undefined ? {} : { criuLogExcerpt: r.result.criuLogExcerpt }),
  };
  return { result, proof: r.proof };
}

/**
 * Overlay lookup without mounting: each file is compared in the top-most layer that has it (a file missing from
 * every layer is compared against the top one, which reports it missing).
 */
export async function digestsByLayer(digests: readonly FileDigest[], layers: readonly string[]): Promise<Map<string, FileDigest[]>> {
  const out = new Map<string, FileDigest[]>();
  const top = layers[0];
  if (top === undefined) return out;
  for (const d of digests) {
    let found = top;
    for (const l of layers) {
      // Looked up inside the layer as a chroot would (a link in a layer never leads out of it).
      if ((await lstatInRoot(l, d.path)) !== undefined) {
        found = l;
        break;
      }
    }
    const list = out.get(found) ?? [];
    list.push(d);
    out.set(found, list);
  }
  return out;
}

/** Target half, for the node agent: compatibility + restore check of a received bundle. */
export async function targetRestoreCheck(
  bundleDir: string,
  opts: ProbeOptions,
  target: TargetRoot,
  sourceFacts?: NodeFacts,
  deps: ProbeDeps = defaultProbeDeps,
  /** Parent of the target's work folder (the agent passes its operation folder); default the OS temp folder. */
  workDir?: string,
): Promise<RestoreCheckResult> {
  return await inWorkDir(workDir, async (work) => (await runTarget(bundleDir, opts, target, sourceFacts, deps, work)).result);
}

/** Pack a bundle as the transfer would (tar + gzip), unpack it where the target reads it. */
export async function transferBundle(bundleDir: string, dest: string, runner: Runner): Promise<{ shippedBytes: number; transferMs: number; archive: string }> {
  const t0 = performance.now();
  const archive = `${dest}.tar.gz`;
  await runOk(runner, 'tar', ['-c', '-z', '-f', archive, '-C', bundleDir, '.'], { timeoutMs: 300_000 });
  const shippedBytes = (await stat(archive)).size;
  await mkdir(dest, { recursive: true });
  await runOk(runner, 'tar', ['-x', '-z', '-f', archive, '-C', dest], { timeoutMs: 300_000 });
  return { shippedBytes, transferMs: Math.round(performance.now() - t0), archive };
}

/**
 * The whole check on one host: source half -> local hand-over -> target half (in its own sandbox) ->
 * composeVerdict, the same steps and the same composition as the node agents (src/agent/source.ts). Throws
 * RootfsNotFoundError, before anything is frozen, when the restore check would have no root filesystem.
 */
export async function checkContainer(
  ref: ContainerRef,
  opts: ProbeOptions,
  target: TargetRoot,
  io: OneHostIo = {},
): Promise<Verdict> {
  return await oneHost(io, async (work, deps, started) => {
    let pending: Promise<unknown> | undefined;
    try {
      const src = await runSource(ref, opts, join(work, 'source'), deps, (info) => assertOneHostRoot(info, target));
      pending = src.sourceFacts;
      Object.assign(io.detail ?? {}, src.detail);
      let transfer: TransferOutcome | undefined;
      let restore: RestoreCheckResult | undefined;
      if (hasImages(src.result)) {
        const dest = join(work, 'target-bundle');
        const t0 = performance.now();
        transfer = await transferBundle(src.result.bundleDir, dest, deps.runner).then(
          (t): TransferOutcome => ({ ms: t.transferMs, shippedBytes: t.shippedBytes }),
          (e: unknown): TransferOutcome => ({ ms: performance.now() - t0, failure: reason('TransferFailed', errMessage(e), undefined, 'transfer') }),
        );
        if (transfer.failure === undefined) {
          // One host: the target node is this node, whose facts the source side is collecting already.
          const tgt = await runTarget(dest, opts, target, src.sourceFacts, deps, work, src.sourceFacts);
          restore = tgt.result;
          if (io.detail !== undefined && tgt.proof !== undefined) io.detail.restoreProof = tgt.proof;
        }
      }
      return composeVerdict({
        dump: src.result,
        ...(transfer === undefined ? {} : { transfer }),
        ...(restore === undefined ? {} : { restore }),
        totalMs: performance.now() - started,
      });
    } finally {
      await pending;
    }
  });
}

/**
 * Restore-only: would this existing checkpoint restore here? It is restored stopped and killed, never run.
 * Throws RuntimeSocketError (ctr.ts), before any wait, when the checkpoint's image must come from containerd
 * (no target root given) and the containerd socket does not exist: a usage problem, not a verdict.
 */
export async function checkRestoreOnly(
  src: CheckpointSource,
  opts: ProbeOptions,
  target: TargetRoot,
  io: OneHostIo = {},
): Promise<Verdict> {
  return await oneHost(io, async (work, deps, started) => {
    const reasons: Reason[] = [];
    const criuVersions: Verdict['criu'] = {};
    let cp;
    try {
      cp = await openCheckpoint(src, join(work, 'checkpoint'), deps.runner);
    } catch (e) {
      reasons.push(reason('CheckpointNotFound', errMessage(e), undefined, 'setup'));
      return makeVerdict({ reasons, timings: { totalMs: Math.round(performance.now() - started) }, sizes: {}, criu: criuVersions });
    }
    if (chooseLowerdirs(target, cp.manifest) === undefined && cp.manifest.imageRef !== undefined) {
      assertRuntimeSocket(runtimeEndpoint(target).address);
    }
    let criu: { path: string; version: string };
    let facts: NodeFacts;
    try {
      criu = await deps.resolveCriu();
      facts = await deps.collectNodeFacts(criu);
    } catch (e) {
      reasons.push(setupReason(e));
      return makeVerdict({ reasons, timings: { totalMs: Math.round(performance.now() - started) }, sizes: {}, criu: criuVersions });
    }
    criuVersions.target = criu.version;
    const old = criuTooOld(criu.version);
    if (old !== undefined) reasons.push({ ...old, phase: 'compat' });
    const need = memoryNeeded(cp.pageBytes);
    if (facts.memAvailableBytes > 0 && need > facts.memAvailableBytes) {
      reasons.push(
        reason('InsufficientMemory', `the checkpoint holds ${cp.pageBytes} bytes of memory pages; this node has ${facts.memAvailableBytes} bytes available (need ${need} with margin)`, undefined, 'compat'),
      );
      // A full checkpoint's restore allocates all of that memory: never squeeze the node for a check.
      return makeVerdict({
        reasons,
        timings: { totalMs: Math.round(performance.now() - started) },
        sizes: { imageBytes: cp.imageBytes, workloadRssBytes: cp.pageBytes },
        criu: criuVersions,
      });
    }
    const r = await restoreCheck({
      bundleDir: work,
      imagesDir: cp.imagesDir,
      options: opts,
      target,
      workDir: join(work, 'restore'),
      facts,
      criuVersion: criu.version,
      manifest: cp.manifest,
      extraLowerdirs: cp.extraLowerdirs,
      ...(cp.netnsKey === undefined ? {} : { netnsKey: cp.netnsKey }),
      cpuCap: cp.hasCpuinfo,
    });
    reasons.push(...r.result.reasons);
    if (io.detail !== undefined) io.detail.restoreProof = r.proof;
    return makeVerdict({
      reasons: dedupe(reasons),
      timings: { ...(r.result.timings.restoreMs === undefined ? {} : { restoreMs: r.result.timings.restoreMs }), totalMs: Math.round(performance.now() - started) },
      sizes: { imageBytes: cp.imageBytes, workloadRssBytes: cp.pageBytes },
      criu: criuVersions,
      ...(r.result.criuLogExcerpt === undefined ? {} : { criuLogExcerpt: r.result.criuLogExcerpt }),
    });
  });
}
