// cgroup.img (CRIU's images/cgroup.proto): read the cgroup properties a dump recorded, and drop the
// freeze state (v1 freezer.state, v2 cgroup.freeze).
//
// Why: a dump taken from a frozen freezer cgroup (runc passes freeze_cgroup, and containerd pauses the task
// before a checkpoint, as the kubelet checkpoint API does) records `freezer.state = FROZEN` on the container's
// cgroup. `criu restore` writes it back to the restored cgroup just before it releases the tasks, so they come
// up frozen: in state D, where SIGKILL cannot end them until the cgroup is thawed. The restore check never wants
// that state (it restores stopped with --leave-stopped), so restoreCheck restores from images without it.
//
// Messages: cgroup_entry { repeated cg_set_entry sets = 1; repeated cg_controller_entry controllers = 2 }
//   cg_controller_entry { repeated string cnames = 1; repeated cgroup_dir_entry dirs = 2; optional bool is_threaded = 3 }
//   cgroup_dir_entry { required string dir_name = 1; repeated cgroup_dir_entry children = 2;
//                      repeated cgroup_prop_entry properties = 3; optional cgroup_perms dir_perms = 4 }
//   cgroup_prop_entry { required string name = 1; required string value = 2; optional cgroup_perms perms = 3 }

import { constants } from 'node:fs';
import { copyFile, cp, link, lstat, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeMessage, encodeImage, encodeMessage, getString, readImageFile } from './images.ts';
import type { ImageFile, PbField } from './images.ts';

export const CGROUP_MAGIC = 0x59383330;
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

function dirProps(fields: readonly PbField[], parent: string, controllers: string[], out: CgroupProp[]): void {
  const name = getString(fields, 1) ?? '';
  const dir = parent === '' ? name : `${parent}/${name}`;
  for (const f of fields) {
    if (f.wire !== 2) continue;
    if (f.no === 2) dirProps(decodeMessage(f.v), dir, controllers, out);
    else if (f.no === 3) {
      const p = decodeMessage(f.v);
      out.push({ controllers, dir, name: getString(p, 1) ?? '', value: getString(p, 2) ?? '' });
    }
  }
}

/** Every cgroup property recorded in a cgroup.img, with its controllers and folder. Pure. */
export function decodeCgroupProps(img: ImageFile): CgroupProp[] {
  const out: CgroupProp[] = [];
  for (const entry of img.entries) {
    for (const c of decodeMessage(entry)) {
      if (c.no !== 2 || c.wire !== 2) continue;
      const ctl = decodeMessage(c.v);
      const controllers = ctl.filter((f) => f.no === 1 && f.wire === 2).map((f) => (f.v as Buffer).toString('utf8'));
      for (const d of ctl) if (d.no === 2 && d.wire === 2) dirProps(decodeMessage(d.v), '', controllers, out);
    }
  }
  return out;
}

/** A cgroup_dir_entry without its freeze properties, children included. Pure. */
function dropFreezeInDir(buf: Buffer): { buf: Buffer; dropped: number } {
  let dropped = 0;
  const out: PbField[] = [];
  for (const f of decodeMessage(buf)) {
    if (f.wire === 2 && f.no === 3 && FREEZE_PROPS.includes(getString(decodeMessage(f.v), 1) ?? '')) {
      dropped++;
      continue;
    }
    if (f.wire === 2 && f.no === 2) {
      const child = dropFreezeInDir(f.v);
      dropped += child.dropped;
      out.push({ ...f, v: child.buf });
      continue;
    }
    out.push(f);
  }
  return { buf: dropped === 0 ? buf : encodeMessage(out), dropped };
}

/** The image without any freeze property; `dropped` counts them (0: the image is returned unchanged). Pure. */
export function dropFreezeState(img: ImageFile): { img: ImageFile; dropped: number } {
  let dropped = 0;
  const entries = img.entries.map((entry) => {
    let changed = false;
    const fields = decodeMessage(entry).map((c) => {
      if (c.no !== 2 || c.wire !== 2) return c;
      let n = 0;
      const ctl = decodeMessage(c.v).map((d) => {
        if (d.no !== 2 || d.wire !== 2) return d;
        const r = dropFreezeInDir(d.v);
        n += r.dropped;
        return r.dropped === 0 ? d : { ...d, v: r.buf };
      });
      if (n === 0) return c;
      dropped += n;
      changed = true;
      return { ...c, v: encodeMessage(ctl) };
    });
    return changed ? encodeMessage(fields) : entry;
  });
  return { img: dropped === 0 ? img : { head: img.head, entries }, dropped };
}

async function readCgroupImage(dir: string): Promise<ImageFile | undefined> {
  try {
    return await readImageFile(join(dir, 'cgroup.img'), CGROUP_MAGIC);
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
