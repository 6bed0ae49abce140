// Restore-only mode: given an existing full checkpoint (a CRIU image folder, or a checkpoint archive as the
// kubelet checkpoint API, CRI-O and Podman write it), build what the restore check needs (a manifest: external
// mount keys, addresses, rootfs layers) from what the checkpoint holds, then run the restore check. The restore
// still uses --leave-stopped and kills: a full checkpoint's tasks never run.
//
// Archive layout (CRI-O / Podman / kubelet): `checkpoint/` (CRIU images), `config.dump` (container config JSON:
// rootfsImageName/Ref), `spec.dump` (OCI runtime spec: mounts, annotations), `rootfs-diff.tar` (the container's
// changes to its root), `deleted.files` (paths removed from the image), `network.status` (CNI result), and
// sometimes `bind.mounts`, `dump.log`, `stats-dump`.

import { mkdir, readFile, readdir, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Manifest } from './dump.ts';
import type { ExternalMount } from './criu-args.ts';
import { isImageDir, readMountpoints, readNetnsExtKey, imageDirSize, pagemapSummary } from './images.ts';
import { run, runOk } from './exec.ts';
import type { Runner } from './exec.ts';

export type CheckpointSource = { imagesDir: string } | { archive: string };

export interface OpenedCheckpoint {
  imagesDir: string;
  manifest: Manifest;
  /** Extra overlay layers (the archive's rootfs diff), top first. */
  extraLowerdirs: string[];
  /** Files the container deleted from its image (not applied: reported). */
  deletedFiles: string[];
  /** What was found in the archive (names), for messages. */
  contents: string[];
  netnsKey?: string;
  hasCpuinfo: boolean;
  pageBytes: number;
  imageBytes: number;
}

/** OCI spec mounts -> destination -> source (for mapping external mount keys back to host paths). Pure. */
export function specMountSources(spec: unknown): Map<string, string> {
  const out = new Map<string, string>();
  const mounts = (spec as { mounts?: unknown } | null)?.mounts;
  if (!Array.isArray(mounts)) return out;
  for (const m of mounts as { destination?: unknown; source?: unknown; type?: unknown; options?: unknown }[]) {
    if (typeof m.destination === 'string' && typeof m.source === 'string') out.set(m.destination, m.source);
  }
  return out;
}

/** OCI spec linux.maskedPaths: runc hides them with /dev/null (files) and marks them external in the images. Pure. */
export function specMaskedPaths(spec: unknown): Set<string> {
  const masked = (spec as { linux?: { maskedPaths?: unknown } } | null)?.linux?.maskedPaths;
  return new Set(Array.isArray(masked) ? masked.filter((x): x is string => typeof x === 'string') : []);
}

/** Every "a.b.c.d/n" or IPv6 "x::y/n" string found anywhere in a CNI/network status JSON. Pure. */
export function addressesFromNetworkStatus(json: unknown): string[] {
  const out = new Set<string>();
  const visit = (v: unknown): void => {
    if (typeof v === 'string') {
      if (/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(v) || /^[0-9a-fA-F:]+:[0-9a-fA-F:]*\/\d{1,3}$/.test(v)) {
        if (!v.startsWith('127.') && !v.startsWith('::1/')) out.add(v);
      }
    } else if (Array.isArray(v)) v.forEach(visit);
    else if (typeof v === 'object' && v !== null) Object.values(v).forEach(visit);
  };
  visit(json);
  return [...out];
}

/** The image name/ref a config.dump names (CRI-O: rootfsImageRef/rootfsImageName; Podman: rootfsImageName). Pure. */
export function imageRefFromConfig(config: unknown): string | undefined {
  const c = config as Record<string, unknown> | null;
  for (const k of ['rootfsImageName', 'rootfsImageRef', 'rootfsImage', 'image']) {
    const v = c?.[k];
    if (typeof v === 'string' && v !== '') return v;
  }
  return undefined;
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Open a checkpoint into `workDir` (archives are extracted there). Throws with a user-facing message when the
 * input is not a checkpoint.
 */
export async function openCheckpoint(src: CheckpointSource, workDir: string, runner: Runner = run): Promise<OpenedCheckpoint> {
  let root: string;
  let imagesDir: string;
  const contents: string[] = [];
  if ('archive' in src) {
    root = join(workDir, 'archive');
    await mkdir(root, { recursive: true });
    // GNU tar detects gzip/zstd/xz on extraction by itself.
    await runOk(runner, 'tar', ['-x', '-f', src.archive, '-C', root, '--no-same-owner'], { timeoutMs: 300_000 });
    contents.push(...(await readdir(root)));
    imagesDir = join(root, 'checkpoint');
    if (!(await isImageDir(imagesDir))) {
      if (await isImageDir(root)) imagesDir = root;
      else throw new Error(`${src.archive} is not a checkpoint archive: no checkpoint/inventory.img (found: ${contents.join(', ')})`);
    }
  } else {
    imagesDir = src.imagesDir;
    root = src.imagesDir;
    if (!(await isImageDir(imagesDir))) throw new Error(`${imagesDir} is not a CRIU image folder (no valid inventory.img)`);
    contents.push(...(await readdir(imagesDir)));
  }

  const extraLowerdirs: string[] = [];
  const diffTar = join(root, 'rootfs-diff.tar');
  if ('archive' in src && existsSync(diffTar)) {
    const diff = join(workDir, 'rootfs-diff');
    await mkdir(diff, { recursive: true });
    await runOk(runner, 'tar', ['-x', '-f', diffTar, '-C', diff, '--no-same-owner'], { timeoutMs: 300_000 });
    extraLowerdirs.push(diff);
  }
  const deletedFiles: string[] = [];
  const del = await readJson(join(root, 'deleted.files'));
  if (Array.isArray(del)) for (const d of del) if (typeof d === 'string') deletedFiles.push(d);

  const spec = await readJson(join(root, 'spec.dump'));
  const config = await readJson(join(root, 'config.dump'));
  const netStatus = await readJson(join(root, 'network.status'));
  const sources = specMountSources(spec);
  const masked = specMaskedPaths(spec);

  const externalMounts: ExternalMount[] = [];
  for (const m of await readMountpoints(imagesDir)) {
    if (m.extKey === undefined) continue;
    const hostPath = sources.get(m.extKey) ?? sources.get(m.mountpoint) ?? (masked.has(m.mountpoint) ? '/dev/null' : undefined);
    externalMounts.push({
      mountpoint: m.mountpoint,
      key: m.extKey,
      kind: hostPath !== undefined ? 'bind' : m.fstype === 12 || m.fstype === 23 ? 'cgroup' : m.fstype === 5 ? 'tmpfs' : 'other',
      ...(hostPath === undefined ? {} : { hostPath }),
      // runc hides a masked file by binding /dev/null over it.
      ...(hostPath === '/dev/null' ? { file: true } : {}),
    });
  }
  const netnsKey = await readNetnsExtKey(imagesDir);
  const size = await imageDirSize(imagesDir);
  const pm = await pagemapSummary(imagesDir);
  const imageRef = imageRefFromConfig(config);
  const manifest: Manifest = {
    version: 1,
    createdAt: (await stat(join(imagesDir, 'inventory.img'))).mtime.toISOString(),
    ...(imageRef === undefined ? {} : { imageRef }),
    rootfs: { lowerdirs: [] },
    externalMounts,
    netnsExternal: netnsKey !== undefined,
    addresses: addressesFromNetworkStatus(netStatus).map((cidr) => ({ ifname: 'eth0', cidr })),
    fileDigests: [],
    workloadRssBytes: size.pageBytes,
    pagemap: pm,
    kind: 'full',
  };
  return {
    imagesDir,
    manifest,
    extraLowerdirs,
    deletedFiles,
    contents,
    ...(netnsKey === undefined ? {} : { netnsKey }),
    hasCpuinfo: existsSync(join(imagesDir, 'cpuinfo.img')),
    pageBytes: size.pageBytes,
    imageBytes: size.totalBytes,
  };
}
