// A bundle's manifest.json, read and checked before anything uses it. A bundle received from a peer agent is
// untrusted: the file is opened without following a link (O_NOFOLLOW, then fstat: a regular file, at most
// MANIFEST_MAX_BYTES), and the JSON is checked field by field against the Manifest type (dump.ts): unknown fields,
// wrong types, option-like or malformed image references, addresses, keys and paths are refused with the field's
// name. In 'peer' mode a manifest must carry no host path at all (overlay lower/upper dirs, the root's host
// folder, bind mount sources):
// the source agent strips them before shipping (probe.ts), and the target takes its root from its own image
// resolution. The validators are pure and unit-tested in manifest.test.ts.

import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { join, posix } from 'node:path';
import type { NodeFacts } from './api.ts';
import type { ExternalMount } from './criu-args.ts';
import type { Manifest } from './dump.ts';
import type { FileDigest } from './facts.ts';
import { parseNetSysctls } from './net-sysctls.ts';

/** Largest manifest.json read (a real one is a few KiB; its file digests dominate). */
export const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;
/** Most entries of each list in a manifest. */
export const MANIFEST_MAX_MOUNTS = 1024;
export const MANIFEST_MAX_ADDRESSES = 256;
export const MANIFEST_MAX_DIGESTS = 20_000;
export const MANIFEST_MAX_LOWERDIRS = 512;

/** 'local': made on this host (the one-host check: host paths allowed). 'peer': received from another node. */
export type ManifestOrigin = 'local' | 'peer';

/** Why a manifest was refused: the field, what is wrong, and what to do. */
export class ManifestError extends Error {
  override name = 'ManifestError';
  readonly field: string;
  readonly hint: string;
  constructor(field: string, problem: string, hint = 'the bundle was not made by a migprobe agent of this version: upgrade both agents to the same release') {
    super(`manifest.json: ${field} ${problem}`);
    this.field = field;
    this.hint = hint;
  }
}

/** A containerd image reference or digest: letters, digits and ._/:@+-, not starting with '-'. Pure. */
export const IMAGE_REF = /^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,1023}$/;
/** A CRIU external-mount key as mountKey() (criu-args.ts) makes them. Pure. */
export const MOUNT_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
/** A Linux interface name (IFNAMSIZ - 1 characters, no '/', no space, not starting with '-'). */
export const IFNAME = /^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,14}$/;

/** `a.b.c.d/n` or `v6/n` with a prefix in range, nothing else (no leading '-', no spaces, no zone). Pure. */
export function isCidr(s: string): boolean {
  const m = /^([0-9A-Fa-f.:]{2,45})\/(\d{1,3})$/.exec(s);
  if (m === null) return false;
  const addr = m[1] ?? '';
  const prefix = Number(m[2]);
  if (isIPv4(addr)) return prefix <= 32;
  if (isIPv6(addr)) return prefix <= 128;
  return false;
}

/** An absolute path with nothing to normalize: no `..`, no `.`, no empty part, no NUL or newline. Pure. */
export function isPlainAbsolute(p: string): boolean {
  return p.length <= 4096 && p.startsWith('/') && !/[\0\n]/.test(p) && (p === '/' || (posix.normalize(p) === p && !p.endsWith('/') && !p.split('/').includes('..')));
}

/** A relative path inside a root: no leading '/', no `..`, `.` or empty part, no NUL or newline. Pure. */
export function isPlainRelative(p: string): boolean {
  if (p.length === 0 || p.length > 4096 || p.startsWith('/') || /[\0\n]/.test(p)) return false;
  return p.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function obj(v: unknown, field: string, allowed: readonly string[]): Obj {
  if (!isObj(v)) throw new ManifestError(field, 'must be an object');
  for (const k of Object.keys(v)) if (!allowed.includes(k)) throw new ManifestError(`${field}.${k}`, 'is not a manifest field');
  return v;
}

function str(v: unknown, field: string, max = 4096, pattern?: RegExp, what?: string): string {
  if (typeof v !== 'string' || v.length > max) throw new ManifestError(field, `must be a string of at most ${max} characters`);
  if (pattern !== undefined && !pattern.test(v)) throw new ManifestError(field, `${JSON.stringify(v.slice(0, 100))} is not ${what ?? `of the form ${pattern.source}`}`);
  return v;
}

function count(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < -1) throw new ManifestError(field, 'must be a whole number');
  return v;
}

function bool(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') throw new ManifestError(field, 'must be true or false');
  return v;
}

function list(v: unknown, field: string, max: number): unknown[] {
  if (!Array.isArray(v)) throw new ManifestError(field, 'must be a list');
  if (v.length > max) throw new ManifestError(field, `has ${v.length} entries, more than the ${max} allowed`);
  return v;
}

function hostPath(v: unknown, field: string, origin: ManifestOrigin): string {
  if (origin === 'peer') {
    throw new ManifestError(field, 'names a host path, which a bundle from another node must not', 'the source agent ships no host paths: upgrade it to this release');
  }
  return str(v, field, 4096, /^\//, 'a plain absolute path');
}

/** A host path field (hostPath), also plain. */
function plainHostPath(v: unknown, field: string, origin: ManifestOrigin): string {
  const p = hostPath(v, field, origin);
  if (!isPlainAbsolute(p)) throw new ManifestError(field, 'is not a plain absolute path');
  return p;
}

function plainAbsolute(v: unknown, field: string): string {
  const s = str(v, field);
  if (!isPlainAbsolute(s)) throw new ManifestError(field, `${JSON.stringify(s.slice(0, 100))} is not a plain absolute path (no .., no empty parts)`);
  return s;
}

const MOUNT_KINDS: readonly ExternalMount['kind'][] = ['cgroup', 'bind', 'tmpfs', 'other'];

function externalMount(v: unknown, field: string, origin: ManifestOrigin): ExternalMount {
  const o = obj(v, field, ['mountpoint', 'key', 'kind', 'hostPath', 'file']);
  const kind = o['kind'];
  if (typeof kind !== 'string' || !(MOUNT_KINDS as readonly string[]).includes(kind)) throw new ManifestError(`${field}.kind`, `must be one of ${MOUNT_KINDS.join(', ')}`);
  const out: ExternalMount = {
    mountpoint: plainAbsolute(o['mountpoint'], `${field}.mountpoint`),
    key: str(o['key'], `${field}.key`, 255, MOUNT_KEY, 'a mount key (letters, digits and ._-, not starting with - or .)'),
    kind: kind as ExternalMount['kind'],
  };
  if (o['hostPath'] !== undefined) out.hostPath = plainHostPath(o['hostPath'], `${field}.hostPath`, origin);
  if (o['file'] !== undefined) out.file = bool(o['file'], `${field}.file`);
  return out;
}

function fileDigest(v: unknown, field: string): FileDigest {
  const o = obj(v, field, ['path', 'sha256', 'size']);
  const path = str(o['path'], `${field}.path`);
  if (!isPlainRelative(path)) throw new ManifestError(`${field}.path`, `${JSON.stringify(path.slice(0, 100))} is not a plain path relative to the container root`);
  const size = count(o['size'], `${field}.size`);
  if (size < 0) throw new ManifestError(`${field}.size`, 'must not be negative');
  return { path, sha256: str(o['sha256'], `${field}.sha256`, 64, /^[0-9a-f]{64}$/, 'a sha256 in lowercase hex'), size };
}

/** Node facts as a peer sent them (manifest sourceFacts, the restore-check request header), checked. Pure. */
export function parseNodeFacts(v: unknown, field: string): NodeFacts {
  const o = obj(v, field, ['hostname', 'arch', 'kernelRelease', 'criuVersion', 'criuFeatures', 'memAvailableBytes', 'cpu']);
  const features = o['criuFeatures'];
  if (!isObj(features)) throw new ManifestError(`${field}.criuFeatures`, 'must be an object');
  if (Object.keys(features).length > 256) throw new ManifestError(`${field}.criuFeatures`, 'has more than 256 entries');
  const criuFeatures: Record<string, boolean> = {};
  for (const [k, b] of Object.entries(features)) {
    str(k, `${field}.criuFeatures key`, 64, /^[A-Za-z0-9_.-]+$/, 'a feature name');
    criuFeatures[k] = bool(b, `${field}.criuFeatures.${k}`);
  }
  const cpu = obj(o['cpu'], `${field}.cpu`, ['vendor', 'model', 'flags']);
  const flags = list(cpu['flags'], `${field}.cpu.flags`, 1024).map((f, i) => str(f, `${field}.cpu.flags[${i}]`, 64));
  const mem = count(o['memAvailableBytes'], `${field}.memAvailableBytes`);
  return {
    hostname: str(o['hostname'], `${field}.hostname`, 253),
    arch: str(o['arch'], `${field}.arch`, 64),
    kernelRelease: str(o['kernelRelease'], `${field}.kernelRelease`, 256),
    criuVersion: str(o['criuVersion'], `${field}.criuVersion`, 64),
    criuFeatures,
    memAvailableBytes: mem,
    cpu: { vendor: str(cpu['vendor'], `${field}.cpu.vendor`, 256), model: str(cpu['model'], `${field}.cpu.model`, 256), flags },
  };
}

const FIELDS = ['version', 'createdAt', 'imageRef', 'rootfs', 'externalMounts', 'netnsExternal', 'addresses', 'netSysctls', 'fileDigests', 'sourceFacts', 'workloadRssBytes', 'pagemap', 'rootfsDiff', 'kind'] as const satisfies readonly (keyof Manifest)[];
// A field added to Manifest (dump.ts) without a check here fails the typecheck: a peer's manifest would refuse it.
const _everyFieldChecked: [Exclude<keyof Manifest, (typeof FIELDS)[number]>] extends [never] ? true : never = true;

/** The manifest `v` (parsed JSON) as a Manifest, every field checked; throws ManifestError naming the first bad field. Pure. */
export function parseManifest(v: unknown, origin: ManifestOrigin): Manifest {
  const o = obj(v, 'manifest', FIELDS);
  if (o['version'] !== 1) throw new ManifestError('version', `is ${JSON.stringify(o['version'])}, this agent reads version 1`);
  const kind = o['kind'];
  if (kind !== 'lazy' && kind !== 'full') throw new ManifestError('kind', 'must be lazy or full');
  const rootfs = obj(o['rootfs'], 'rootfs', ['lowerdirs', 'upperdir', 'hostDir']);
  const lowerdirs = list(rootfs['lowerdirs'], 'rootfs.lowerdirs', MANIFEST_MAX_LOWERDIRS).map((d, i) => plainHostPath(d, `rootfs.lowerdirs[${i}]`, origin));
  const m: Manifest = {
    version: 1,
    createdAt: str(o['createdAt'], 'createdAt', 64, /^[0-9T:.Z+-]+$/, 'an RFC 3339 time'),
    rootfs: { lowerdirs },
    externalMounts: list(o['externalMounts'], 'externalMounts', MANIFEST_MAX_MOUNTS).map((x, i) => externalMount(x, `externalMounts[${i}]`, origin)),
    netnsExternal: bool(o['netnsExternal'], 'netnsExternal'),
    addresses: list(o['addresses'], 'addresses', MANIFEST_MAX_ADDRESSES).map((x, i) => {
      const a = obj(x, `addresses[${i}]`, ['ifname', 'cidr']);
      return {
        ifname: str(a['ifname'], `addresses[${i}].ifname`, 15, IFNAME, 'an interface name'),
        cidr: str(a['cidr'], `addresses[${i}].cidr`, 64, /^[0-9A-Fa-f]/, 'an address/prefix'),
      };
    }),
    fileDigests: list(o['fileDigests'], 'fileDigests', MANIFEST_MAX_DIGESTS).map((x, i) => fileDigest(x, `fileDigests[${i}]`)),
    kind,
  };
  m.addresses.forEach((a, i) => {
    if (!isCidr(a.cidr)) throw new ManifestError(`addresses[${i}].cidr`, `${JSON.stringify(a.cidr)} is not an IPv4 or IPv6 address with a prefix length`);
  });
  if (rootfs['upperdir'] !== undefined) m.rootfs.upperdir = plainHostPath(rootfs['upperdir'], 'rootfs.upperdir', origin);
  if (rootfs['hostDir'] !== undefined) m.rootfs.hostDir = plainHostPath(rootfs['hostDir'], 'rootfs.hostDir', origin);
  if (o['netSysctls'] !== undefined) {
    try {
      m.netSysctls = parseNetSysctls(o['netSysctls']);
    } catch (e) {
      throw new ManifestError('netSysctls', (e as Error).message.replace(/^netSysctls:? ?/, ''));
    }
  }
  if (o['imageRef'] !== undefined) m.imageRef = str(o['imageRef'], 'imageRef', 1024, IMAGE_REF, 'an image reference (letters, digits and ._/:@+-, not starting with -)');
  if (o['sourceFacts'] !== undefined) m.sourceFacts = parseNodeFacts(o['sourceFacts'], 'sourceFacts');
  if (o['workloadRssBytes'] !== undefined) m.workloadRssBytes = count(o['workloadRssBytes'], 'workloadRssBytes');
  if (o['pagemap'] !== undefined) {
    const p = obj(o['pagemap'], 'pagemap', ['files', 'removedEntries', 'lazyPages', 'presentPages']);
    m.pagemap = {
      files: count(p['files'], 'pagemap.files'),
      removedEntries: count(p['removedEntries'], 'pagemap.removedEntries'),
      lazyPages: count(p['lazyPages'], 'pagemap.lazyPages'),
      presentPages: count(p['presentPages'], 'pagemap.presentPages'),
    };
  }
  if (o['rootfsDiff'] !== undefined) {
    const r = obj(o['rootfsDiff'], 'rootfsDiff', ['bytes', 'omittedBytes']);
    if (r['bytes'] !== undefined && r['omittedBytes'] === undefined) m.rootfsDiff = { bytes: count(r['bytes'], 'rootfsDiff.bytes') };
    else if (r['omittedBytes'] !== undefined && r['bytes'] === undefined) m.rootfsDiff = { omittedBytes: count(r['omittedBytes'], 'rootfsDiff.omittedBytes') };
    else throw new ManifestError('rootfsDiff', 'must have exactly one of bytes, omittedBytes');
  }
  return m;
}

/** A manifest that may leave this host: host paths (overlay dirs, bind mount sources) removed. Pure. */
export function withoutHostPaths(m: Manifest): Manifest {
  return {
    ...m,
    rootfs: { lowerdirs: [] },
    externalMounts: m.externalMounts.map((e) => {
      const { hostPath: _dropped, ...rest } = e;
      return rest;
    }),
  };
}

/**
 * `<bundleDir>/manifest.json`, opened without following a link, a regular file of at most `maxBytes`, parsed and
 * checked (parseManifest). Throws ManifestError.
 */
export async function readManifestFile(bundleDir: string, origin: ManifestOrigin, maxBytes = MANIFEST_MAX_BYTES): Promise<Manifest> {
  const path = join(bundleDir, 'manifest.json');
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new ManifestError('file', 'is a symbolic link, which a bundle must not hold');
    if (code === 'ENOENT') throw new ManifestError('file', 'is missing from the bundle');
    throw new ManifestError('file', `cannot be opened: ${(e as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ManifestError('file', 'is not a regular file');
    if (st.size > maxBytes) throw new ManifestError('file', `is ${st.size} bytes, more than the ${maxBytes} allowed`);
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, st.size, 0);
    let json: unknown;
    try {
      json = JSON.parse(buf.subarray(0, bytesRead).toString('utf8'));
    } catch (e) {
      throw new ManifestError('file', `is not JSON: ${(e as Error).message.slice(0, 200)}`);
    }
    return parseManifest(json, origin);
  } finally {
    await fh.close();
  }
}
