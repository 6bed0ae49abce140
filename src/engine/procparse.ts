// Parsers for /proc files and for the output of ctr, ss and ip. Pure: text in, data out.

export interface MountEntry {
  mountId: number;
  parentId: number;
  /** "major:minor" of the filesystem. */
  dev: string;
  /** The path inside the filesystem that is mounted (a subtree for bind mounts). */
  root: string;
  mountpoint: string;
  mountOptions: string[];
  /** Optional fields, e.g. shared:12 master:3. */
  propagation: string[];
  fstype: string;
  source: string;
  superOptions: string[];
}

export type MountKind =
  | 'root'
  | 'proc'
  | 'sysfs'
  | 'cgroup'
  | 'tmpfs'
  | 'devpts'
  | 'mqueue'
  | 'dev'
  | 'bind'
  | 'overlay'
  | 'other';

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
export function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const parts = line.split(' ');
    const sep = parts.indexOf('-', 6);
    if (sep < 0 || parts.length < sep + 3) continue;
    out.push({
      mountId: Number(parts[0]),
      parentId: Number(parts[1]),
      dev: parts[2] ?? '',
      root: unescapeMountField(parts[3] ?? ''),
      mountpoint: unescapeMountField(parts[4] ?? ''),
      mountOptions: (parts[5] ?? '').split(','),
      propagation: parts.slice(6, sep),
      fstype: parts[sep + 1] ?? '',
      source: unescapeMountField(parts[sep + 2] ?? ''),
      superOptions: (parts[sep + 3] ?? '').split(','),
    });
  }
  return out;
}

/** The mount that is `/` for the reader of this mountinfo: the last one mounted there. */
export function rootMount(mounts: readonly MountEntry[]): MountEntry | undefined {
  return mounts.filter((m) => m.mountpoint === '/').at(-1);
}

const BLOCKLESS_FS = new Set([
  'proc', 'sysfs', 'cgroup', 'cgroup2', 'tmpfs', 'devpts', 'mqueue', 'overlay', 'devtmpfs', 'securityfs', 'debugfs',
  'tracefs', 'bpf', 'fusectl', 'configfs', 'hugetlbfs', 'pstore', 'binfmt_misc', 'autofs', 'nsfs', 'ramfs',
]);

export function classifyMount(m: MountEntry, rootMountId: number | undefined): MountKind {
  if (m.mountId === rootMountId) return 'root';
  switch (m.fstype) {
    case 'proc':
      return 'proc';
    case 'sysfs':
      return 'sysfs';
    case 'cgroup':
    case 'cgroup2':
      return 'cgroup';
    case 'devpts':
      return 'devpts';
    case 'mqueue':
      return 'mqueue';
    case 'overlay':
      return 'overlay';
    case 'tmpfs':
      return m.mountpoint === '/dev' ? 'dev' : 'tmpfs';
    case 'devtmpfs':
      // there is one devtmpfs, the host's: inside a container it is always a bind of host device nodes
      return m.mountpoint === '/dev' ? 'dev' : 'bind';
  }
  // A disk (or other block-backed) filesystem inside a container is a bind of a host path.
  if (!BLOCKLESS_FS.has(m.fstype)) return 'bind';
  return 'other';
}

/** Overlay super options -> lower dirs (top first), upper dir, work dir. */
export function overlayDirs(m: MountEntry): { lowerdirs: string[]; upperdir?: string; workdir?: string } {
  const out: { lowerdirs: string[]; upperdir?: string; workdir?: string } = { lowerdirs: [] };
  for (const o of m.superOptions) {
    const eq = o.indexOf('=');
    if (eq < 0) continue;
    const k = o.slice(0, eq);
    const v = o.slice(eq + 1);
    if (k === 'lowerdir') out.lowerdirs.push(...v.split(':').filter((x) => x !== ''));
    else if (k === 'lowerdir+') out.lowerdirs.push(v);
    else if (k === 'upperdir') out.upperdir = v;
    else if (k === 'workdir') out.workdir = v;
  }
  return out;
}

/**
 * Where a mount of the container comes from on the host: the host mount of the same device whose root is a
 * prefix of the container mount's root, joined with the rest. Undefined when the host cannot see it.
 */
export function hostPathOf(m: MountEntry, hostMounts: readonly MountEntry[]): string | undefined {
  let best: MountEntry | undefined;
  for (const h of hostMounts) {
    if (h.dev !== m.dev) continue;
    const prefix = h.root === '/' ? '/' : `${h.root}/`;
    if (!(m.root === h.root || m.root.startsWith(prefix))) continue;
    if (best === undefined || h.root.length > best.root.length) best = h;
  }
  if (best === undefined) return undefined;
  const rest = best.root === '/' ? m.root : m.root.slice(best.root.length);
  const joined = `${best.mountpoint.replace(/\/$/, '')}/${rest.replace(/^\//, '')}`;
  return joined === '' ? '/' : joined.replace(/\/$/, '') || '/';
}

/** The mount a path (inside the mount namespace) lives on: the longest mountpoint prefix, last mounted wins. */
export function mountOfPath(path: string, mounts: readonly MountEntry[]): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const mp = m.mountpoint;
    const inside = mp === '/' || path === mp || path.startsWith(`${mp}/`);
    if (!inside) continue;
    if (best === undefined || mp.length >= best.mountpoint.length) best = m;
  }
  return best;
}

export interface CgroupEntry {
  hierarchy: number;
  /** Empty for the cgroup v2 (unified) hierarchy. */
  controllers: string[];
  path: string;
}

export function parseCgroup(text: string): CgroupEntry[] {
  const out: CgroupEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (m === null) continue;
    out.push({ hierarchy: Number(m[1]), controllers: m[2] === '' ? [] : (m[2] ?? '').split(','), path: m[3] ?? '' });
  }
  return out;
}

/** /proc/<pid>/stat -> ppid (the comm field may hold spaces and parentheses). */
export function parseStatPpid(text: string): number | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const fields = text.slice(close + 2).split(' ');
  const ppid = Number(fields[1]);
  return Number.isInteger(ppid) ? ppid : undefined;
}

/** A "Key:\tvalue" field of /proc/<pid>/status. */
export function statusField(text: string, key: string): string | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${key}:`)) return line.slice(key.length + 1).trim();
  }
  return undefined;
}

/** `ctr task ls` -> container ID -> { pid, status }. */
export function parseCtrTaskLs(text: string): Map<string, { pid: number; status: string }> {
  const out = new Map<string, { pid: number; status: string }>();
  for (const line of text.split('\n').slice(1)) {
    const t = line.trim().split(/\s+/);
    if (t.length < 3) continue;
    const pid = Number(t[1]);
    if (t[0] !== undefined && Number.isInteger(pid)) out.set(t[0], { pid, status: t[2] ?? '' });
  }
  return out;
}

export interface InetSocket {
  inode: number;
  /** Kernel TCP state number (1 ESTABLISHED, 10 LISTEN, 7 CLOSE...). */
  state: number;
  local: string;
  remote: string;
  /** For a listening TCP socket: connections waiting in its accept queue. */
  rxQueue: number;
}

export const TCP_STATES: Readonly<Record<number, string>> = {
  1: 'ESTABLISHED', 2: 'SYN_SENT', 3: 'SYN_RECV', 4: 'FIN_WAIT1', 5: 'FIN_WAIT2', 6: 'TIME_WAIT', 7: 'CLOSE',
  8: 'CLOSE_WAIT', 9: 'LAST_ACK', 10: 'LISTEN', 11: 'CLOSING', 12: 'NEW_SYN_RECV',
};

function hexIpv4(h: string): string {
  const n = Number.parseInt(h, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join('.');
}

function hexIpv6(h: string): string {
  const groups: string[] = [];
  for (let w = 0; w < 4; w++) {
    const word = h.slice(w * 8, w * 8 + 8);
    // each 32-bit word is in host (little-endian) order
    const bytes = [word.slice(6, 8), word.slice(4, 6), word.slice(2, 4), word.slice(0, 2)];
    groups.push(`${bytes[0] ?? ''}${bytes[1] ?? ''}`, `${bytes[2] ?? ''}${bytes[3] ?? ''}`);
  }
  const full = groups.map((g) => g.replace(/^0+(?=.)/, '').toLowerCase()).join(':');
  if (full.startsWith('0:0:0:0:0:ffff:')) {
    const v4 = h.slice(24, 32);
    return `::ffff:${hexIpv4(v4)}`;
  }
  return full.replace(/(^|:)0(:0)+(:|$)/, '::');
}

/** "0100007F:1F90" -> "127.0.0.1:8080"; IPv6 as "[addr]:port". */
export function decodeProcAddr(s: string): string {
  const [ip = '', port = '0'] = s.split(':');
  const p = Number.parseInt(port, 16);
  return ip.length === 8 ? `${hexIpv4(ip)}:${p}` : `[${hexIpv6(ip)}]:${p}`;
}

/** /proc/net/{tcp,tcp6,udp,udp6,raw,raw6,icmp,icmp6,udplite,udplite6}. */
export function parseProcNetInet(text: string): InetSocket[] {
  const out: InetSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const t = line.trim().split(/\s+/);
    if (t.length < 10) continue;
    out.push({
      inode: Number(t[9]),
      state: Number.parseInt(t[3] ?? '0', 16),
      local: decodeProcAddr(t[1] ?? ''),
      remote: decodeProcAddr(t[2] ?? ''),
      rxQueue: Number.parseInt((t[4] ?? '0:0').split(':')[1] ?? '0', 16) || 0,
    });
  }
  return out;
}

/** Inode numbers of a /proc/net table whose inode is column `col` (unix 6, netlink 9, packet 8). */
export function parseProcNetInodes(text: string, col: number): number[] {
  const out: number[] = [];
  for (const line of text.split('\n').slice(1)) {
    const t = line.trim().split(/\s+/);
    const ino = Number(t[col]);
    if (t.length > col && Number.isInteger(ino) && ino > 0) out.push(ino);
  }
  return out;
}

export interface UnixSocketInfo {
  inode: number;
  peer: number;
  netid: string;
  state: string;
  localName: string;
}

/** `ss -x -a -n` (no -p) -> inode and peer inode of every unix socket of the namespace. */
export function parseSsUnix(text: string): UnixSocketInfo[] {
  const out: UnixSocketInfo[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim().split(/\s+/);
    if (t.length < 8 || t[0] === 'Netid' || !(t[0] ?? '').startsWith('u_')) continue;
    const peer = Number(t[t.length - 1]);
    // local name may hold spaces: it runs from t[4] to the token before the local inode
    const nums: number[] = [];
    for (let i = 5; i < t.length - 2; i++) if (/^\d+$/.test(t[i] ?? '')) nums.push(i);
    const li = nums.at(-1);
    if (li === undefined || !Number.isInteger(peer)) continue;
    out.push({
      netid: t[0] ?? '',
      state: t[1] ?? '',
      localName: t.slice(4, li).join(' '),
      inode: Number(t[li]),
      peer,
    });
  }
  return out;
}

export interface LockInfo {
  kind: string;
  mode: string;
  /** ADVISORY or MANDATORY; for a lease ACTIVE, BREAKING (another open is breaking it) or BREAKER. */
  state?: string;
  pid: number;
  /** "major:minor:inode" (major and minor in hex as the kernel prints them). */
  file: string;
}

/** One line of /proc/locks or an fdinfo `lock:` line (without the `lock:` prefix). Waiters (->) are skipped. */
export function parseLockLine(line: string): LockInfo | undefined {
  const t = line.trim().split(/\s+/);
  if (t.length < 6 || !/^\d+:$/.test(t[0] ?? '') || t[1] === '->') return undefined;
  return { kind: t[1] ?? '', mode: t[3] ?? '', state: t[2] ?? '', pid: Number(t[4]), file: t[5] ?? '' };
}

export function parseProcLocks(text: string): LockInfo[] {
  return text.split('\n').map(parseLockLine).filter((x): x is LockInfo => x !== undefined);
}

export function parseFdinfoLocks(text: string): LockInfo[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('lock:'))
    .map((l) => parseLockLine(l.slice('lock:'.length)))
    .filter((x): x is LockInfo => x !== undefined);
}

/** smaps_rollup -> bytes of Rss and Pss. */
export function parseSmapsRollup(text: string): { rss: number; pss: number } {
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    return m === null ? 0 : Number(m[1]) * 1024;
  };
  return { rss: kb('Rss'), pss: kb('Pss') };
}

export interface InterfaceAddrs {
  name: string;
  ipv4: string[];
  ipv6: string[];
}

/** `ip -j addr show` -> per interface addresses with prefix length ("10.0.0.2/24"). */
export function parseIpAddrJson(text: string): InterfaceAddrs[] {
  const data: unknown = JSON.parse(text === '' ? '[]' : text);
  if (!Array.isArray(data)) return [];
  const out: InterfaceAddrs[] = [];
  for (const ifc of data as { ifname?: unknown; addr_info?: unknown }[]) {
    if (typeof ifc.ifname !== 'string') continue;
    const e: InterfaceAddrs = { name: ifc.ifname, ipv4: [], ipv6: [] };
    for (const a of Array.isArray(ifc.addr_info) ? (ifc.addr_info as { family?: unknown; local?: unknown; prefixlen?: unknown }[]) : []) {
      if (typeof a.local !== 'string') continue;
      const addr = `${a.local}/${typeof a.prefixlen === 'number' ? a.prefixlen : ''}`;
      if (a.family === 'inet') e.ipv4.push(addr);
      else if (a.family === 'inet6') e.ipv6.push(addr);
    }
    out.push(e);
  }
  return out;
}

/**
 * Character devices CRIU can carry (criu/files.c dump_chrdev): the mem major (1: null, zero, full, random,
 * urandom, kmsg...), misc tun (10:200) and autofs (10:235), and ttys (4, 5, 128-143 pty, 188 and 204 serial).
 * Every other character device, and every block device, is a DeviceFile blocker.
 */
export function criuCarriesDevice(kind: 'char' | 'block', major: number, minor: number): boolean {
  if (kind === 'block') return false;
  if (major === 1) return true;
  if (major === 10) return minor === 200 || minor === 235;
  // A virtual console (major 4, minors 0..63): CRIU dumps it but its restore fails here (zdtm vt: `tty: Corrupted
  // master peer`; the sandboxed restore check passed, so only the preflight can say it). Serial ports from 64 up.
  if (major === 4) return minor >= 64;
  if (major === 5 || major === 188 || major === 204) return true;
  return major >= 128 && major <= 143;
}

/** Linux dev_t (as Node's Stats.rdev, new encoding) -> major, minor. */
export function devMajorMinor(rdev: number): { major: number; minor: number } {
  const r = BigInt(rdev);
  const major = Number(((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn));
  const minor = Number((r & 0xffn) | ((r >> 12n) & ~0xffn));
  return { major, minor };
}

/** One mapping of /proc/<pid>/smaps: its maps line, its `Key: N kB` fields in bytes, and its VmFlags. */
export interface SmapsVma {
  start: string;
  end: string;
  /** e.g. "rw-s": the fourth letter is s (shared) or p (private). */
  perms: string;
  /** "major:minor" of the backing file's device ("00:00" for anonymous memory). */
  dev: string;
  inode: number;
  /** The pathname column: a file, "[heap]", "[stack]", "/dev/zero (deleted)", "/SYSV0000002a (deleted)"... */
  path: string;
  /** Rss, Pss, Anonymous, Swap, Locked... in bytes. */
  bytes: Record<string, number>;
  /** The two-letter VmFlags ("lo" locked, "sh" shared, "ht" hugetlb...). */
  flags: string[];
}

const MAPS_LINE = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) [0-9a-f]+ ([0-9a-f]+:[0-9a-f]+) (\d+)\s*(.*)$/;
const SMAPS_FIELD = /^([A-Za-z_]+):\s+(\d+) kB$/;

export function parseSmaps(text: string): SmapsVma[] {
  const out: SmapsVma[] = [];
  let cur: SmapsVma | undefined;
  for (const line of text.split('\n')) {
    const m = MAPS_LINE.exec(line);
    if (m !== null) {
      cur = { start: m[1] ?? '', end: m[2] ?? '', perms: m[3] ?? '', dev: m[4] ?? '', inode: Number(m[5]), path: m[6] ?? '', bytes: {}, flags: [] };
      out.push(cur);
      continue;
    }
    if (cur === undefined) continue;
    const f = SMAPS_FIELD.exec(line);
    if (f !== null) cur.bytes[f[1] ?? ''] = Number(f[2]) * 1024;
    else if (line.startsWith('VmFlags:')) cur.flags = line.slice('VmFlags:'.length).trim().split(/\s+/).filter((x) => x !== '');
  }
  return out;
}

export interface SysvShmSegment {
  shmid: number;
  /** The segment's size as created (shmget). */
  size: number;
  /** Bytes of the segment in memory and in swap: the pages it really holds. */
  rss: number;
  swap: number;
  /** Tasks attached to it (0: it lives on in the IPC namespace, attached to nobody). */
  nattch: number;
}

/** /proc/sysvipc/shm (of the reader's IPC namespace) -> its segments; undefined when the text is not that table. */
export function parseSysvShm(text: string): SysvShmSegment[] | undefined {
  const lines = text.split('\n');
  const head = (lines[0] ?? '').trim().split(/\s+/);
  const col = (name: string): number => head.indexOf(name);
  if (col('shmid') < 0 || col('size') < 0) return undefined;
  const num = (t: string[], name: string): number => {
    const i = col(name);
    const n = i < 0 ? 0 : Number(t[i]);
    return Number.isFinite(n) ? n : 0;
  };
  const out: SysvShmSegment[] = [];
  for (const line of lines.slice(1)) {
    const t = line.trim().split(/\s+/);
    if (t.length < head.length) continue;
    out.push({ shmid: num(t, 'shmid'), size: num(t, 'size'), rss: num(t, 'rss'), swap: num(t, 'swap'), nattch: num(t, 'nattch') });
  }
  return out;
}
