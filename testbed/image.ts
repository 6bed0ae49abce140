// Builds the test bed's OCI images as one-layer OCI image layouts tarred for `ctr images import`: the test
// image (busybox-static plus every static test program compiled from test/programs/*.c) and the cluster's
// pause image (test/programs/pause.c alone). An image ref carries a hash of its inputs, so a changed program
// gives a new image and an unchanged one is reused.

import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync, rmSync, symlinkSync, copyFileSync, statSync, renameSync, chmodSync } from 'node:fs';
import { join, basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './proc.ts';

const here = dirname(fileURLToPath(import.meta.url));
export const PROGRAMS_DIR = join(here, '..', 'test', 'programs');
const BUSYBOX = '/bin/busybox';

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

function programSources(): string[] {
  if (!existsSync(PROGRAMS_DIR)) return [];
  return readdirSync(PROGRAMS_DIR)
    .filter((f) => f.endsWith('.c'))
    .sort()
    .map((f) => join(PROGRAMS_DIR, f));
}

/** A short hash of everything that goes into the image. */
export function imageInputsHash(): string {
  const h = createHash('sha256');
  h.update('layout-v1');
  if (!existsSync(BUSYBOX)) throw new Error('busybox-static is missing: apt-get install busybox-static (hack/provision.sh does it)');
  h.update(readFileSync(BUSYBOX));
  // The programs and the headers they share.
  const headers = existsSync(PROGRAMS_DIR) ? readdirSync(PROGRAMS_DIR).filter((f) => f.endsWith('.h')).sort().map((f) => join(PROGRAMS_DIR, f)) : [];
  for (const src of [...programSources(), ...headers]) {
    h.update(basename(src));
    h.update(readFileSync(src));
  }
  return h.digest('hex').slice(0, 12);
}

export const IMAGE_REPO = 'migprobe.test/testbed';
export const PAUSE_REPO = 'migprobe.test/pause';

/** The image config fields the test bed sets. */
export interface ImageConfig {
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
}

/**
 * Builds (or reuses from `cacheDir`) a one-layer OCI image layout, tarred for `ctr images import`, named
 * `repo:tag`. `populate` fills the root filesystem; `tag` must change whenever what it writes changes.
 * `annotations` go on the image manifest (e.g. the one that marks a checkpoint image).
 */
export async function buildOciImage(
  cacheDir: string,
  spec: { repo: string; tag: string; populate: (root: string) => Promise<void>; config: ImageConfig; annotations?: Record<string, string> },
): Promise<{ ref: string; tarball: string }> {
  const { tag } = spec;
  const ref = `${spec.repo}:${tag}`;
  const tarball = join(cacheDir, `${basename(spec.repo)}-image-${tag}.tar`);
  if (existsSync(tarball)) return { ref, tarball };

  mkdirSync(cacheDir, { recursive: true });
  const work = join(cacheDir, `image-build-${basename(spec.repo)}-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  const root = join(work, 'rootfs');
  const layout = join(work, 'layout');
  try {
    mkdirSync(root, { recursive: true });
    await spec.populate(root);

    mkdirSync(join(layout, 'blobs/sha256'), { recursive: true });
    const layerTmp = join(work, 'layer.tar');
    await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '--mtime=@0', '--sort=name', '-C', root, '-cf', layerTmp, '.'], {
      timeoutMs: 120_000,
    });
    const layer = readFileSync(layerTmp);
    const layerDigest = sha256(layer);
    renameSync(layerTmp, join(layout, 'blobs/sha256', layerDigest));

    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: spec.config,
        rootfs: { type: 'layers', diff_ids: [`sha256:${layerDigest}`] },
        history: [{ created_by: 'migprobe test bed' }],
      }),
    );
    const configDigest = sha256(config);
    writeFileSync(join(layout, 'blobs/sha256', configDigest), config);

    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${configDigest}`, size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${layerDigest}`, size: statSync(join(layout, 'blobs/sha256', layerDigest)).size }],
        ...(spec.annotations ? { annotations: spec.annotations } : {}),
      }),
    );
    const manifestDigest = sha256(manifest);
    writeFileSync(join(layout, 'blobs/sha256', manifestDigest), manifest);
    writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    writeFileSync(
      join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: `sha256:${manifestDigest}`,
            size: manifest.length,
            annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': tag },
          },
        ],
      }),
    );
    const tmpTar = `${tarball}.${process.pid}.tmp`;
    await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', layout, '-cf', tmpTar, '.'], { timeoutMs: 120_000 });
    renameSync(tmpTar, tarball);
    return { ref, tarball };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Builds (or reuses from `cacheDir`) the test image and returns its ref and path. The rootfs holds
 * /bin/busybox with its applet links, /usr/local/bin/<program>, and the usual empty mount points.
 */
export async function buildImage(cacheDir: string): Promise<{ ref: string; tarball: string }> {
  return await buildOciImage(cacheDir, {
    repo: IMAGE_REPO,
    tag: imageInputsHash(),
    config: { Env: ['PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'], WorkingDir: '/' },
    populate: async (root) => {
      for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'usr/local/bin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'run', 'root', 'var/tmp', 'data']) {
        mkdirSync(join(root, d), { recursive: true });
      }
      copyFileSync(BUSYBOX, join(root, 'bin/busybox'));
      const applets = (await run(BUSYBOX, ['--list-full'])).stdout.split('\n').filter(Boolean);
      for (const path of applets) {
        if (path === 'bin/busybox') continue;
        const target = join(root, path);
        if (existsSync(target)) continue;
        mkdirSync(dirname(target), { recursive: true });
        symlinkSync('/bin/busybox', target);
      }
      writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
      writeFileSync(join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
      writeFileSync(join(root, 'etc/hostname'), 'testbed\n');
      for (const src of programSources()) {
        const out = join(root, 'usr/local/bin', basename(src, '.c'));
        await run('gcc', ['-static', '-O2', '-Wall', '-o', out, src], { timeoutMs: 120_000 });
      }
    },
  });
}

/**
 * The sandbox ("pause") image of the cluster's pods: test/programs/pause.c, static, as /pause. The binary
 * also stays on the host (`binary`, a file named `pause`): it holds the cluster nodes' mount namespaces.
 */
export async function buildPauseImage(cacheDir: string): Promise<{ ref: string; tarball: string; binary: string }> {
  const src = join(PROGRAMS_DIR, 'pause.c');
  const tag = createHash('sha256').update('pause-v1').update(readFileSync(src)).digest('hex').slice(0, 12);
  const binary = join(cacheDir, `pause-${tag}`, 'pause');
  if (!existsSync(binary)) {
    mkdirSync(dirname(binary), { recursive: true });
    const tmp = `${binary}.${process.pid}.tmp`;
    await run('gcc', ['-static', '-O2', '-Wall', '-o', tmp, src], { timeoutMs: 120_000 });
    renameSync(tmp, binary);
  }
  const img = await buildOciImage(cacheDir, {
    repo: PAUSE_REPO,
    tag,
    config: { Entrypoint: ['/pause'] },
    populate: async (root) => {
      copyFileSync(binary, join(root, 'pause'));
      chmodSync(join(root, 'pause'), 0o755);
    },
  });
  return { ...img, binary };
}
