// An image's root filesystem layers from the node's containerd, found without mounting anything and without
// `ctr images mount` (whose behaviour differs between containerd versions): the image record gives the manifest,
// the manifest the config, the config's rootfs.diff_ids the chain ID of the top layer; a read-only view snapshot
// of that chain ID tells the snapshotter's directories (`ctr snapshots view --mounts`, the same on containerd 1.6
// and 2.x), which the sandbox overlay uses directly as its lower layers. The view is removed at once: the layers
// stay, because the image's own snapshots hold them.

import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { ctrOk, ctrOperand, ctrRun } from './ctr.ts';
import type { CtrDeps, RuntimeEndpoint } from './ctr.ts';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Chain IDs of a layer stack (OCI image spec): the first is the first diff ID, each next hashes "parent diff". Pure. */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    if (!DIGEST.test(d)) throw new Error(`image config has an invalid diff ID '${d.slice(0, 100)}'`);
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}

/** `ctr images ls` table -> ref -> target digest (columns REF TYPE DIGEST ...; SIZE has a space). Pure. */
export function parseImagesLs(stdout: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of stdout.split('\n').slice(1)) {
    const [ref, , digest] = line.trim().split(/\s+/);
    if (ref !== undefined && digest !== undefined && DIGEST.test(digest)) out.set(ref, digest);
  }
  return out;
}

/** The OCI/Docker architecture name of a Node.js `process.arch`. Pure. */
export function ociArch(nodeArch: string): string {
  return ({ x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[nodeArch] ?? nodeArch;
}

interface Descriptor {
  digest?: unknown;
  platform?: { os?: unknown; architecture?: unknown };
}

/** What a content blob is, by its shape (index / manifest / config), and the digest or diff IDs it leads to. Pure. */
export function nextStep(blob: unknown, arch: string): { kind: 'index' | 'manifest'; digest: string } | { kind: 'config'; diffIds: string[] } {
  const b = blob as { manifests?: unknown; config?: { digest?: unknown }; rootfs?: { diff_ids?: unknown } } | null;
  if (b !== null && typeof b === 'object' && Array.isArray(b.manifests)) {
    const ms = b.manifests as Descriptor[];
    const pick =
      ms.find((m) => m.platform?.os === 'linux' && m.platform.architecture === arch) ?? (ms.length === 1 ? ms[0] : undefined);
    if (pick === undefined || typeof pick.digest !== 'string' || !DIGEST.test(pick.digest)) {
      throw new Error(`the image index has no manifest for linux/${arch}`);
    }
    return { kind: 'index', digest: pick.digest };
  }
  if (b !== null && typeof b === 'object' && typeof b.config?.digest === 'string') {
    if (!DIGEST.test(b.config.digest)) throw new Error('the image manifest names an invalid config digest');
    return { kind: 'manifest', digest: b.config.digest };
  }
  const ids = b?.rootfs?.diff_ids;
  if (Array.isArray(ids) && ids.length > 0 && ids.every((x) => typeof x === 'string')) return { kind: 'config', diffIds: ids };
  throw new Error('content is neither an image index, a manifest nor an image config with rootfs.diff_ids');
}

/** Lower directories (top first) from the mounts a view snapshot prints (JSON array of {Type, Source, Options}). Pure. */
export function lowerdirsFromMounts(json: string): string[] {
  let mounts: unknown;
  try {
    mounts = JSON.parse(json);
  } catch {
    throw new Error(`ctr snapshots view printed no mount list: ${json.trim().slice(0, 200)}`);
  }
  if (!Array.isArray(mounts) || mounts.length !== 1) throw new Error(`expected one mount for an image view, got ${JSON.stringify(mounts).slice(0, 300)}`);
  const m = mounts[0] as { Type?: unknown; Source?: unknown; Options?: unknown };
  const options = Array.isArray(m.Options) ? m.Options.filter((o): o is string => typeof o === 'string') : [];
  let dirs: string[];
  if (m.Type === 'bind' && typeof m.Source === 'string') dirs = [m.Source];
  else if (m.Type === 'overlay') {
    if (options.some((o) => o.startsWith('upperdir='))) throw new Error('the image view is writable (an overlay with an upperdir)');
    const lower = options.find((o) => o.startsWith('lowerdir='));
    if (lower === undefined) throw new Error('the image view overlay has no lowerdir');
    dirs = lower.slice('lowerdir='.length).split(':');
  } else {
    throw new Error(`the image view is a '${String(m.Type)}' mount; migprobe reads overlay or bind mounts (containerd's overlayfs or native snapshotter)`);
  }
  for (const d of dirs) if (!d.startsWith('/')) throw new Error(`the image view names a relative layer directory '${d}'`);
  return dirs;
}

/** How a ref reaches content when containerd has no image record of that name: `sha256:<id>`, `name@sha256:<d>`. Pure. */
export function digestOfRef(ref: string): string | undefined {
  const at = ref.lastIndexOf('@');
  const d = at >= 0 ? ref.slice(at + 1) : ref;
  return DIGEST.test(d) ? d : undefined;
}

export interface ImageLayers {
  /** Snapshotter directories of the image's layers, top first. */
  lowerdirs: string[];
  chainId: string;
  /** ms spent asking containerd. */
  ms: number;
}

/**
 * The root filesystem layers of image `ref` in `ep`'s containerd. Throws (RuntimeSocketError / RuntimeTimeoutError
 * from ctr.ts, or an Error saying what is missing) when they cannot be found. Leaves no snapshot behind.
 */
export async function imageLayers(
  ref: string,
  ep: RuntimeEndpoint,
  deps: Partial<CtrDeps> = {},
  exists: (p: string) => boolean = existsSync,
): Promise<ImageLayers> {
  const started = performance.now();
  ctrOperand('image reference', ref);
  const images = parseImagesLs(await ctrOk(ep, ['images', 'ls'], 'images ls', deps));
  let digest = images.get(ref) ?? digestOfRef(ref);
  if (digest === undefined) {
    throw new Error(`the image ${ref} is not in containerd namespace ${ep.namespace} at ${ep.address}`);
  }
  let diffIds: string[] | undefined;
  // index -> manifest -> config: at most three hops.
  for (let hop = 0; hop < 3 && diffIds === undefined; hop++) {
    const raw = await ctrOk(ep, ['content', 'get', ctrOperand('content digest', digest)], `content get ${digest}`, deps);
    let blob: unknown;
    try {
      blob = JSON.parse(raw);
    } catch {
      throw new Error(`content ${digest} of image ${ref} is not JSON`);
    }
    const next = nextStep(blob, ociArch(process.arch));
    if (next.kind === 'config') diffIds = next.diffIds;
    else digest = next.digest;
  }
  if (diffIds === undefined) throw new Error(`image ${ref}: no config after three hops from ${images.get(ref) ?? ref}`);
  const chainId = chainIds(diffIds).at(-1) ?? '';
  const key = `migprobe-rootfs-view-${randomBytes(6).toString('hex')}`;
  let lowerdirs: string[] | undefined;
  let failure: Error | undefined;
  try {
    const view = await ctrRun(ep, ['snapshots', 'view', '--mounts', key, ctrOperand('chain ID', chainId)], 'snapshots view', deps);
    if (view.exitCode !== 0) {
      const msg = (view.stderr || view.stdout).trim();
      if (/not found|does not exist/i.test(msg)) {
        throw new Error(`the layers of image ${ref} are not unpacked in containerd's snapshotter (no snapshot ${chainId}); run a container from it, or unpack it (ctr -n ${ep.namespace} images unpack ${ref})`);
      }
      throw new Error(`ctr snapshots view failed: ${msg.slice(-500)}`);
    }
    lowerdirs = lowerdirsFromMounts(view.stdout);
    const missing = lowerdirs.filter((d) => !exists(d));
    if (missing.length > 0) {
      throw new Error(`containerd's layer directories of image ${ref} are not visible here (${missing.join(', ')}): run migprobe where containerd's root is at the same path`);
    }
  } catch (e) {
    failure = e as Error;
  }
  // Always, even after a timeout: the view may exist although ctr did not say so.
  try {
    await removeView(ep, key, deps);
  } catch (e) {
    failure = failure === undefined ? (e as Error) : new Error(`${failure.message}; ${(e as Error).message}`);
  }
  if (failure !== undefined) throw failure;
  return { lowerdirs: lowerdirs ?? [], chainId, ms: Math.round(performance.now() - started) };
}

/** Remove a view snapshot; one already gone (containerd may collect an unleased view itself) is fine. */
async function removeView(ep: RuntimeEndpoint, key: string, deps: Partial<CtrDeps>): Promise<void> {
  const r = await ctrRun(ep, ['snapshots', 'rm', key], 'snapshots rm', deps);
  if (r.exitCode !== 0 && !/not found|does not exist/i.test(r.stderr + r.stdout)) {
    throw new Error(`the view snapshot ${key} could not be removed: ${(r.stderr || r.stdout).trim().slice(-300)}`);
  }
}
