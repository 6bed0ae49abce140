// cgroup.img (CRIU's images/cgroup.proto): read the cgroup properties a dump recorded, and drop the
// freeze state (v1 freezer.state, v2 cgroup.freeze).
//
// Why: a dump taken from a frozen freezer cgroup (runc passes freeze_cgroup, and containerd pauses the task
// before a checkpoint, as the kubelet checkpoint API does) records `freezer.state = FROZEN` on the container's
// cgroup. `criu restore` writes it back to the restored cgroup just before it releases the tasks, so they come
// up frozen: in state D, where SIGKILL cannot end them until the cgroup is thawed. The restore check never wants
// that state (it restores stopped with --leave-stopped), so restoreCheck restores from images without it.
//
// The image is read and rewritten through CRIU's schema (images/cgroup.proto, ./criu-pb/cgroup_pb.ts): a
// cgroup_entry holds controllers, each with a tree of cgroup_dir_entry folders that carry cgroup_prop_entry
// properties.

import { constants } from 'node:fs';
import { copyFile, cp, link, lstat, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { clone, isMessage } from '@bufbuild/protobuf';
import { KIND, encodeImage, messagesOf, readImage } from './images.ts';
import type { Image } from './images.ts';
import { cgroup_entrySchema } from './criu-pb/cgroup_pb.ts';
import type { cgroup_dir_entry } from './criu-pb/cgroup_pb.ts';

export const CGROUP_MAGIC = KIND.cgroup.magic;
/** The properties that freeze a cgroup: v1 freezer.state, v2 cgroup.freeze. */
export const FREEZE_PROPS: readonly string[] = ['freezer.state', 'cgroup.freeze'];

export interface CgroupProp {
  /** Controller names, e.g. ['freezer'] or ['cpu', 'cpuacct']. */
  controllers: string[];
  /** Folder path below the dumped cgroup root, e.g. "k8s.io/abc". */
  dir: string;
  name: string;
  value: string;
}

function dirProps(d: cgroup_dir_entry, parent: string, controllers: string[], out: CgroupProp[]): void {
  const dir = parent === '' ? d.dirName : `${parent}/${d.dirName}`;
  // Children first: the order of the fields in the file (CRIU writes them by field number).
  for (const c of d.children) dirProps(c, dir, controllers, out);
  for (const p of d.properties) out.push({ controllers, dir, name: p.name, value: p.value });
}

/** Every cgroup property recorded in a cgroup.img, with its controllers and folder. Pure. */
export function decodeCgroupProps(img: Image): CgroupProp[] {
  const out: CgroupProp[] = [];
  for (const entry of messagesOf(img, cgroup_entrySchema)) {
    for (const ctl of entry.controllers) for (const d of ctl.dirs) dirProps(d, '', ctl.cnames, out);
  }
  return out;
}

/** Removes the freeze properties from a folder and its children (in place); returns how many. */
function dropFreezeInDir(d: cgroup_dir_entry): number {
  const before = d.properties.length;
  d.properties = d.properties.filter((p) => !FREEZE_PROPS.includes(p.name));
  return d.children.reduce((n, c) => n + dropFreezeInDir(c), before - d.properties.length);
}

/** The image without any freeze property; `dropped` counts them (0: the image is returned unchanged). Pure. */
export function dropFreezeState(img: Image): { img: Image; dropped: number } {
  let dropped = 0;
  const entries = img.entries.map((e) => {
    if (!isMessage(e.message, cgroup_entrySchema)) return e;
    const copy = clone(cgroup_entrySchema, e.message);
    const n = copy.controllers.reduce((sum, ctl) => sum + ctl.dirs.reduce((s, d) => s + dropFreezeInDir(d), 0), 0);
    dropped += n;
    return n === 0 ? e : { ...e, message: copy };
  });
  return { img: dropped === 0 ? img : { kind: img.kind, entries }, dropped };
}

async function readCgroupImage(dir: string): Promise<Image | undefined> {
  try {
    return await readImage(join(dir, 'cgroup.img'), KIND.cgroup);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** The cgroup properties of an image folder (none when it has no cgroup.img). */
export async function readCgroupProps(dir: string): Promise<CgroupProp[]> {
  const img = await readCgroupImage(dir);
  return img === undefined ? [] : decodeCgroupProps(img);
}

/** The freeze properties among `props`, as "freezer.state=FROZEN". Pure. */
export function freezeStates(props: readonly CgroupProp[]): string[] {
  return props.filter((p) => FREEZE_PROPS.includes(p.name)).map((p) => `${p.name}=${p.value}`);
}

/** Hard link `src` to `dest`, or copy it (a clone where the file system can) when they are on different file systems. */
async function linkOrCopy(src: string, dest: string): Promise<void> {
  try {
    await link(src, dest);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM') throw e;
    if ((await lstat(src)).isDirectory()) await cp(src, dest, { recursive: true });
    else await copyFile(src, dest, constants.COPYFILE_FICLONE);
  }
}

/**
 * The image folder CRIU should restore from so that no freeze state is carried over: `imagesDir` itself when its
 * cgroup.img records none, else `viewDir`, made here: every file of `imagesDir` hard-linked (copied across file
 * systems) and a cgroup.img without the freeze properties (the user's checkpoint is never modified). Not symlinks:
 * restored tasks open their images after CRIU has moved them into the new root, where an absolute link dangles.
 * `dropped` lists what was left out.
 */
export async function imagesWithoutFreezeState(imagesDir: string, viewDir: string): Promise<{ dir: string; dropped: string[] }> {
  const img = await readCgroupImage(imagesDir);
  if (img === undefined) return { dir: imagesDir, dropped: [] };
  const dropped = freezeStates(decodeCgroupProps(img));
  if (dropped.length === 0) return { dir: imagesDir, dropped };
  await mkdir(viewDir, { recursive: true });
  for (const name of await readdir(imagesDir)) {
    if (name !== 'cgroup.img') await linkOrCopy(join(imagesDir, name), join(viewDir, name));
  }
  await writeFile(join(viewDir, 'cgroup.img'), encodeImage(dropFreezeState(img).img));
  return { dir: viewDir, dropped };
}
