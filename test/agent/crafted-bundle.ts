// Crafted tar archives for the malicious-peer tests: members of any type, at any path (absolute, `..`), with any
// link target or device numbers, written header by header with the `tar` package's Header (which encodes what it
// is given, unlike an archiver). Plus a valid lazy-bundle manifest to mutate.

import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { Header, type types } from 'tar';

type EntryTypeName = types.EntryTypeName;

export interface CraftedMember {
  path: string;
  type?: EntryTypeName;
  body?: string | Buffer;
  linkpath?: string;
  devmaj?: number;
  devmin?: number;
  mode?: number;
}

/** An uncompressed tar of `members`, in order, ended by two zero blocks. */
export function tarOf(members: readonly CraftedMember[]): Buffer {
  const blocks: Buffer[] = [];
  for (const m of members) {
    const body = m.body === undefined ? Buffer.alloc(0) : Buffer.from(m.body);
    const type = m.type ?? 'File';
    const h = new Header({
      path: m.path,
      type,
      size: type === 'File' ? body.length : 0,
      mode: m.mode ?? (type === 'Directory' ? 0o755 : 0o644),
      uid: 0,
      gid: 0,
      mtime: new Date(0),
      ...(m.linkpath === undefined ? {} : { linkpath: m.linkpath }),
      ...(m.devmaj === undefined ? {} : { devmaj: m.devmaj }),
      ...(m.devmin === undefined ? {} : { devmin: m.devmin }),
    });
    const block = Buffer.alloc(512);
    h.encode(block, 0);
    blocks.push(block);
    if (type === 'File' && body.length > 0) {
      blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** gzip of tarOf(members), and its sha256 as the restore-check header wants it. */
export function gzTarOf(members: readonly CraftedMember[]): { gz: Buffer; sha256: string } {
  const gz = gzipSync(tarOf(members), { level: 9 });
  return { gz, sha256: createHash('sha256').update(gz).digest('hex') };
}

/** A valid manifest of a lazy bundle as a current source agent ships it (no host paths). */
export function shippedManifest(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: 1,
    createdAt: '2026-12-02T12:00:00.000Z',
    imageRef: 'docker.io/library/busybox:1.36',
    rootfs: { lowerdirs: [] },
    externalMounts: [{ mountpoint: '/etc/hosts', key: 'bind-etc_hosts', kind: 'bind', file: true }],
    netnsExternal: true,
    addresses: [{ ifname: 'eth0', cidr: '10.77.3.2/24' }],
    fileDigests: [{ path: 'bin/busybox', sha256: 'a'.repeat(64), size: 1000 }],
    workloadRssBytes: 4096,
    kind: 'lazy',
    ...over,
  };
}
