// Preflight: read /proc for every task of the container and list ALL blockers before anything is frozen.
// Nothing here stops, signals or attaches to a task.
// Signature (for A2): preflightScan(info, opts, deps?) -> { reasons, rssBytes, nonLazy }.
//
// What is a blocker (and which ProbeOptions allow it):
// - TCPEstablished: a TCP socket in ESTABLISHED, SYN_SENT, FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK or CLOSING
//   (CRIU refuses exactly these without --tcp-established or --tcp-close). Allowed by tcpEstablished or
//   tcpClose. Also a listening socket with connections waiting in its accept queue: CRIU refuses those in-flight
//   connections without --skip-in-flight. Allowed by tcpSkipInFlight (they are dropped).
// - ExternalUnixSocket: a unix socket whose peer inode is held by no task of the dump tree. Allowed by
//   extUnixSockets for datagram sockets only: CRIU's --ext-unix-sk cannot carry half of a stream connection.
// - IoUring: an fd or a mapping of anon_inode:[io_uring]. Never allowed.
// - MemfdSecret: an fd or a mapping of /secretmem. Never allowed.
// - UnsupportedFile: an fd on an anon inode of a kind CRIU has no dumper for (it carries eventfd, eventpoll,
//   inotify, fanotify, signalfd, timerfd, pidfd and, when built with libbpf, bpf maps; io_uring has its own
//   code). userfaultfd, perf_event and the like are reported. Never allowed.
// - DeviceFile: an fd on a block device, or on a character device CRIU does not carry (see
//   procparse.criuCarriesDevice: mem devices, tty/pty, tun and autofs are carried). Never allowed.
// - GhostFileTooLarge: an fd on a deleted file (no link left) using more than ghostLimitBytes of disk blocks
//   (CRIU compares st_blocks * 512). Memfds are not ghost files. Raise ghostLimitBytes.
// - FileLocks: a lock in /proc/locks owned by a task, or a `lock:` line in an fd's fdinfo (OFD locks have no
//   owner PID in /proc/locks). Allowed by fileLocks.
//   A lease in the middle of a break (LEASE BREAKING in /proc/locks) is a blocker even with fileLocks: after a
//   real C/R the task gets a stray lease-break signal (zdtm's file_lease02..04).
// - Ptraced: a thread with a non-zero TracerPid. Never allowed (CRIU must be the only tracer).
// - UnsupportedSocket: a socket whose protocol (the socket's system.sockprotoname xattr) is not one CRIU
//   dumps: TCP, UDP, UDP-Lite, RAW, PING (v4 and v6), UNIX, NETLINK, PACKET. Node cannot call getxattr, so
//   one `perl` call (perl-base is part of every Debian) reads the xattr for all sockets of the container.
//   MPTCP, AF_VSOCK, AF_XDP, AF_ALG, SCTP, bluetooth... are reported. Never allowed.
// - Uprobes: a `[uprobes]` mapping (a uprobe fired in the task). Allowed by allowUprobes (CRIU --allow-uprobes).
// - InsufficientPrivileges: migprobe (so CRIU) has no CAP_SYS_RESOURCE and a task's real, effective or saved
//   uid or gid is not ours, in our user namespace: the kernel refuses CRIU that task's rlimits. Never allowed.
// - NonLazyMemory: more than nonLazyMemoryLimitBytes (default 64 MiB) of memory CRIU dumps even in lazy mode
//   (nonlazy.ts says which). Raise nonLazyMemoryLimitBytes.
// rssBytes: the sum of Pss of every process (shared pages counted once), Rss when Pss is unavailable.
// nonLazy: the non-lazy memory by kind (nonlazy.ts), reported whatever the verdict.

import { readFile, readdir, readlink, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import type { NonLazyMemory, Reason } from '../verdict.ts';
import { NON_LAZY_MEMORY_LIMIT_BYTES } from './api.ts';
import type { ProbeOptions } from './api.ts';
import type { ContainerInfo } from './container.ts';
import { run } from './exec.ts';
import { nonLazyReason, scanNonLazyMemory } from './nonlazy.ts';
import type { Runner } from './exec.ts';
import {
  TCP_STATES,
  criuCarriesDevice,
  devMajorMinor,
  parseFdinfoLocks,
  parseProcLocks,
  parseProcNetInet,
  parseProcNetInodes,
  parseSmapsRollup,
  parseSsUnix,
  statusField,
} from './procparse.ts';
import type { InetSocket, LockInfo, UnixSocketInfo } from './procparse.ts';
import { IN_FLIGHT_HINT, reason } from '../reasons.ts';

const CMD_TIMEOUT_MS = 15_000;

/** TCP states CRIU refuses without --tcp-established (criu/sk-inet.c). */
const CONNECTED_TCP = new Set([1, 2, 4, 5, 8, 9, 11]);
const TCP_LISTEN = 10;

const CRIU_SOCKET_PROTOS = /^(TCP|TCPv6|UDP|UDPv6|UDP-Lite|UDPLITEv6|RAW|RAWv6|PING|PINGv6|UNIX(-STREAM|-DGRAM)?|NETLINK|PACKET)$/;

/** getxattr(2) syscall numbers, for the perl bridge. */
const GETXATTR_NR: Partial<Record<NodeJS.Architecture, number>> = { x64: 191, arm64: 8, riscv64: 8 };

const PROTONAME_SCRIPT =
  'my $nr = shift @ARGV; for my $p (@ARGV) { my $b = "\\0" x 128; my $k = "system.sockprotoname"; ' +
  'my $r = syscall($nr, $p, $k, $b, 128); $b =~ s/\\0.*//s; print $p, "\\t", ($r > 0 ? $b : "?"), "\\n"; }';

const ANON_INODE = 'anon_inode:';
/** The anon inode kinds CRIU 4.2 dumps (criu/files.c), as they follow `anon_inode:` in an fd link. */
const CRIU_ANON_INODES: ReadonlySet<string> = new Set([
  '[eventfd]', '[eventpoll]', 'inotify', '[fanotify]', '[signalfd]', '[timerfd]', '[pidfd]', 'bpf-map',
]);

export interface PreflightDeps {
  runner: Runner;
  proc: string;
}

const defaultDeps: PreflightDeps = { runner: run, proc: '/proc' };

interface FdRef {
  pid: number;
  fd: number;
  link: string;
}

async function tryRead(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

async function tryStat(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch {
    return undefined;
  }
}

async function listFds(proc: string, pid: number): Promise<FdRef[]> {
  let names: string[];
  try {
    names = await readdir(`${proc}/${pid}/fd`);
  } catch {
    return [];
  }
  const out: FdRef[] = [];
  for (const n of names) {
    try {
      out.push({ pid, fd: Number(n), link: await readlink(`${proc}/${pid}/fd/${n}`) });
    } catch {
      // closed meanwhile
    }
  }
  return out.sort((a, b) => a.fd - b.fd);
}

/** Socket protocol names via the system.sockprotoname xattr; empty when the bridge is unavailable. */
async function protoNames(paths: string[], deps: PreflightDeps): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const nr = GETXATTR_NR[process.arch];
  if (paths.length === 0 || nr === undefined) return out;
  const r = await deps.runner('perl', ['-e', PROTONAME_SCRIPT, String(nr), ...paths], { timeoutMs: CMD_TIMEOUT_MS });
  if (r.exitCode !== 0) return out;
  for (const line of r.stdout.split('\n')) {
    const tab = line.lastIndexOf('\t');
    if (tab <= 0) continue;
    const name = line.slice(tab + 1);
    if (name !== '?' && name !== '') out.set(line.slice(0, tab), name);
  }
  return out;
}

interface NetTables {
  tcp: Map<number, InetSocket & { v6: boolean }>;
  known: Set<number>;
  unix: Map<number, UnixSocketInfo>;
  ssFailed?: string;
}

async function netTables(proc: string, pid: number, deps: PreflightDeps): Promise<NetTables> {
  const t: NetTables = { tcp: new Map(), known: new Set(), unix: new Map() };
  for (const f of ['tcp', 'tcp6']) {
    for (const s of parseProcNetInet((await tryRead(`${proc}/${pid}/net/${f}`)) ?? '')) {
      t.tcp.set(s.inode, { ...s, v6: f === 'tcp6' });
      t.known.add(s.inode);
    }
  }
  for (const f of ['udp', 'udp6', 'udplite', 'udplite6', 'raw', 'raw6', 'icmp', 'icmp6']) {
    for (const s of parseProcNetInet((await tryRead(`${proc}/${pid}/net/${f}`)) ?? '')) t.known.add(s.inode);
  }
  for (const [f, col] of [['unix', 6], ['netlink', 9], ['packet', 8]] as const) {
    for (const ino of parseProcNetInodes((await tryRead(`${proc}/${pid}/net/${f}`)) ?? '', col)) t.known.add(ino);
  }
  const ss = await deps.runner('nsenter', [`--net=${proc}/${pid}/ns/net`, '--', 'ss', '-x', '-a', '-n'], {
    timeoutMs: CMD_TIMEOUT_MS,
  });
  if (ss.exitCode === 0) {
    for (const u of parseSsUnix(ss.stdout)) {
      t.unix.set(u.inode, u);
      t.known.add(u.inode);
    }
  } else {
    t.ssFailed = ss.timedOut ? 'ss timed out' : ss.stderr.trim().slice(0, 200);
  }
  return t;
}

function where(f: FdRef): string {
  return `task ${f.pid} fd ${f.fd}`;
}

export async function preflightScan(
  info: ContainerInfo,
  opts: ProbeOptions,
  deps: Partial<PreflightDeps> = {},
): Promise<{ reasons: Reason[]; rssBytes: number; nonLazy: NonLazyMemory }> {
  const d: PreflightDeps = { ...defaultDeps, ...deps };
  const proc = d.proc;
  const reasons: Reason[] = [];
  const pidSet = new Set(info.pids);
  const allTids = new Set(info.pids.flatMap((p) => info.threads[p] ?? [p]));

  const fds: FdRef[] = [];
  for (const pid of info.pids) fds.push(...(await listFds(proc, pid)));

  // --- sockets
  const sockets = fds
    .map((f) => ({ f, m: /^socket:\[(\d+)\]$/.exec(f.link) }))
    .filter((x): x is { f: FdRef; m: RegExpExecArray } => x.m !== null)
    .map(({ f, m }) => ({ ...f, inode: Number(m[1]) }));
  const heldInodes = new Set(sockets.map((s) => s.inode));

  const tablesByNs = new Map<string, NetTables>();
  const tablesOfPid = new Map<number, NetTables>();
  for (const pid of new Set(sockets.map((s) => s.pid))) {
    let ns = '';
    try {
      ns = await readlink(`${proc}/${pid}/ns/net`);
    } catch {
      continue;
    }
    let t = tablesByNs.get(ns);
    if (t === undefined) {
      t = await netTables(proc, pid, d);
      tablesByNs.set(ns, t);
    }
    tablesOfPid.set(pid, t);
  }
  const names = await protoNames(
    sockets.map((s) => `${proc}/${s.pid}/fd/${s.fd}`),
    d,
  );

  for (const s of sockets) {
    const t = tablesOfPid.get(s.pid);
    const proto = names.get(`${proc}/${s.pid}/fd/${s.fd}`);
    if (proto !== undefined && !CRIU_SOCKET_PROTOS.test(proto)) {
      reasons.push(reason('UnsupportedSocket', `${where(s)}: ${proto} socket (inode ${s.inode}), which CRIU cannot dump`));
      continue;
    }
    if (t === undefined) continue;
    const tcp = t.tcp.get(s.inode);
    if (tcp !== undefined) {
      if (tcp.state === TCP_LISTEN && tcp.rxQueue > 0) {
        if (opts.tcpSkipInFlight !== true) {
          reasons.push(
            reason(
              'TCPEstablished',
              `${where(s)}: TCP listener ${tcp.local} has ${tcp.rxQueue} connection(s) not yet accepted (in flight)`,
              IN_FLIGHT_HINT,
            ),
          );
        }
      } else if (CONNECTED_TCP.has(tcp.state) && !opts.tcpEstablished && opts.tcpClose !== true) {
        reasons.push(
          reason(
            'TCPEstablished',
            `${where(s)}: TCP ${tcp.local} -> ${tcp.remote} ${TCP_STATES[tcp.state] ?? String(tcp.state)}`,
          ),
        );
      }
      continue;
    }
    const ux = t.unix.get(s.inode);
    if (ux !== undefined) {
      if (ux.peer !== 0 && !heldInodes.has(ux.peer)) {
        const stream = ux.netid !== 'u_dgr';
        if (!opts.extUnixSockets || stream) {
          const kind = { u_str: 'stream', u_dgr: 'datagram', u_seq: 'seqpacket' }[ux.netid] ?? ux.netid;
          const name = ux.localName === '*' || ux.localName === '' ? 'unnamed' : ux.localName;
          reasons.push(
            reason(
              'ExternalUnixSocket',
              `${where(s)}: unix ${kind} socket ${name} (inode ${s.inode}) is connected to peer inode ${ux.peer}, ` +
                'which no task of the container holds',
              opts.extUnixSockets
                ? 'options.extUnixSockets (CRIU --ext-unix-sk) only carries datagram sockets; close this stream ' +
                    'connection before the migration, or have the workload reconnect'
                : undefined,
            ),
          );
        }
      }
      continue;
    }
    if (proto === undefined && !t.known.has(s.inode) && names.size === 0 && t.ssFailed === undefined) {
      // No protocol name (bridge unavailable) and in no table: most likely a family CRIU cannot dump.
      reasons.push(reason('UnsupportedSocket', `${where(s)}: socket inode ${s.inode} is of no family CRIU dumps (not inet, unix, netlink or packet)`));
    }
  }

  // --- io_uring, memfd_secret, devices, ghost files
  for (const f of fds) {
    if (f.link === 'anon_inode:[io_uring]') {
      reasons.push(reason('IoUring', `${where(f)}: io_uring instance`));
      continue;
    }
    if (f.link.startsWith('/secretmem')) {
      reasons.push(reason('MemfdSecret', `${where(f)}: memfd_secret area (${f.link})`));
      continue;
    }
    if (f.link.startsWith(ANON_INODE) && !CRIU_ANON_INODES.has(f.link.slice(ANON_INODE.length))) {
      reasons.push(reason('UnsupportedFile', `${where(f)}: ${f.link}, a kind of file CRIU cannot dump`));
      continue;
    }
    if (!f.link.startsWith('/')) continue;
    const st = await tryStat(`${proc}/${f.pid}/fd/${f.fd}`);
    if (st === undefined) continue;
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      const kind = st.isBlockDevice() ? 'block' : 'char';
      const { major, minor } = devMajorMinor(st.rdev);
      if (!criuCarriesDevice(kind, major, minor)) {
        reasons.push(reason('DeviceFile', `${where(f)}: ${f.link} (${kind} device ${major}:${minor})`));
      }
      continue;
    }
    if (f.link.endsWith(' (deleted)') && !f.link.startsWith('/memfd:') && st.isFile() && st.nlink === 0) {
      const used = st.blocks * 512;
      if (used > opts.ghostLimitBytes) {
        const path = f.link.slice(0, -' (deleted)'.length);
        reasons.push(
          reason(
            'GhostFileTooLarge',
            `${where(f)}: deleted file ${path} still open, ${used} bytes on disk (ghost limit ${opts.ghostLimitBytes})`,
            `raise options.ghostLimitBytes (CLI --ghost-limit) above ${used}, or close the file before the migration`,
          ),
        );
      }
    }
  }

  // mappings without an fd
  for (const pid of info.pids) {
    const maps = (await tryRead(`${proc}/${pid}/maps`)) ?? '';
    const hasFd = (pred: (l: string) => boolean): boolean => fds.some((f) => f.pid === pid && pred(f.link));
    if (/ \/secretmem( \(deleted\))?$/m.test(maps) && !hasFd((l) => l.startsWith('/secretmem'))) {
      reasons.push(reason('MemfdSecret', `task ${pid}: maps a memfd_secret area (no fd left open)`));
    }
    if (/anon_inode:\[io_uring\]$/m.test(maps) && !hasFd((l) => l === 'anon_inode:[io_uring]')) {
      reasons.push(reason('IoUring', `task ${pid}: maps an io_uring ring (no fd left open)`));
    }
    if (/ \[uprobes\]$/m.test(maps) && opts.allowUprobes !== true) {
      reasons.push(reason('Uprobes', `task ${pid}: has a [uprobes] mapping (a uprobe is attached to its code)`));
    }
  }

  // --- CRIU's privileges against the tasks' owners
  reasons.push(...(await privilegeBlockers(proc, info.pids)));

  // --- a lease being broken: CRIU restores it, but the restored task then gets a lease-break signal it already had
  //     (zdtm's file_lease02..04 fail their own check after a real C/R here), whatever options.fileLocks says
  for (const l of parseProcLocks((await tryRead(`${proc}/locks`)) ?? '')) {
    if (!pidSet.has(l.pid) || l.kind !== 'LEASE' || l.state !== 'BREAKING') continue;
    reasons.push(
      reason(
        'FileLocks',
        `task ${l.pid}: holds a ${l.mode} lease on file ${l.file} (dev:inode) that another open is breaking`,
        'a lease in the middle of a break does not survive C/R (the restored task gets a stray lease-break signal), ' +
          'even with --file-locks: probe again once the workload has released or downgraded the lease',
      ),
    );
  }

  // --- file locks
  if (!opts.fileLocks) {
    const covered = new Set<string>();
    for (const f of fds) {
      const fdinfo = await tryRead(`${proc}/${f.pid}/fdinfo/${f.fd}`);
      if (fdinfo === undefined) continue;
      for (const l of parseFdinfoLocks(fdinfo)) {
        covered.add(`${f.pid}:${l.file}`);
        covered.add(`-1:${l.file}`);
        reasons.push(reason('FileLocks', `${where(f)}: holds a ${describeLock(l)} lock on ${f.link}`));
      }
    }
    for (const l of parseProcLocks((await tryRead(`${proc}/locks`)) ?? '')) {
      if (!pidSet.has(l.pid) || covered.has(`${l.pid}:${l.file}`)) continue;
      covered.add(`${l.pid}:${l.file}`);
      reasons.push(reason('FileLocks', `task ${l.pid}: holds a ${describeLock(l)} lock on file ${l.file} (dev:inode)`));
    }
  }

  // --- ptrace
  for (const pid of info.pids) {
    for (const tid of info.threads[pid] ?? [pid]) {
      const status = await tryRead(`${proc}/${pid}/task/${tid}/status`);
      const tracer = Number(status === undefined ? 0 : (statusField(status, 'TracerPid') ?? 0));
      if (tracer > 0) {
        const inside = allTids.has(tracer) ? 'a task of the container' : 'outside the container';
        reasons.push(reason('Ptraced', `task ${pid} thread ${tid}: traced by PID ${tracer} (${inside})`));
      }
    }
  }

  // --- resident memory
  let rssBytes = 0;
  for (const pid of info.pids) {
    const rollup = await tryRead(`${proc}/${pid}/smaps_rollup`);
    if (rollup !== undefined) {
      const { rss, pss } = parseSmapsRollup(rollup);
      rssBytes += pss > 0 ? pss : rss;
      continue;
    }
    const status = await tryRead(`${proc}/${pid}/status`);
    const kb = /^(\d+)\s*kB/.exec(status === undefined ? '' : (statusField(status, 'VmRSS') ?? ''));
    if (kb !== null) rssBytes += Number(kb[1]) * 1024;
  }

  // --- memory CRIU writes even in lazy mode
  const nonLazy = await scanNonLazyMemory(info, fds, d);
  const overLimit = nonLazyReason(nonLazy, opts.nonLazyMemoryLimitBytes ?? NON_LAZY_MEMORY_LIMIT_BYTES);
  if (overLimit !== undefined) reasons.push(overLimit);

  return { reasons, rssBytes, nonLazy: nonLazy.memory };
}

/** CAP_SYS_RESOURCE's bit in the Cap* masks of /proc/<pid>/status. */
const CAP_SYS_RESOURCE = 24n;

/** Real, effective and saved IDs of a `Uid:`/`Gid:` status line. */
function ids(status: string, field: 'Uid' | 'Gid'): string[] {
  return (statusField(status, field) ?? '').split(/\s+/).slice(0, 3);
}

/**
 * CRIU (our child, with our capabilities) reads every task's rlimits with prlimit(2), which the kernel allows
 * for a task of another user only with CAP_SYS_RESOURCE (`Can't get rlimit 0: Operation not permitted`).
 */
async function privilegeBlockers(proc: string, pids: readonly number[]): Promise<Reason[]> {
  const self = await tryRead(`${proc}/self/status`);
  const capEff = self === undefined ? undefined : statusField(self, 'CapEff');
  if (self === undefined || capEff === undefined || !/^[0-9a-f]+$/i.test(capEff)) return [];
  if ((BigInt(`0x${capEff}`) & (1n << CAP_SYS_RESOURCE)) !== 0n) return [];
  const [uid] = ids(self, 'Uid');
  const [gid] = ids(self, 'Gid');
  const ownUserns = await readlink(`${proc}/self/ns/user`).catch(() => undefined);
  const out: Reason[] = [];
  for (const pid of pids) {
    const status = await tryRead(`${proc}/${pid}/status`);
    if (status === undefined) continue;
    // In a user namespace of its own, the kernel asks for CAP_SYS_RESOURCE there, which CRIU has when that
    // namespace belongs to our uid (zdtm's pty03 dumps fine): left to CRIU's log (InsufficientPrivileges too).
    const userns = await readlink(`${proc}/${pid}/ns/user`).catch(() => undefined);
    if (userns !== undefined && ownUserns !== undefined && userns !== ownUserns) continue;
    const u = ids(status, 'Uid');
    const g = ids(status, 'Gid');
    if (u.every((x) => x === uid) && g.every((x) => x === gid)) continue;
    out.push(
      reason(
        'InsufficientPrivileges',
        `task ${pid}: runs as uid ${u.join('/')} gid ${g.join('/')}, and migprobe (uid ${uid ?? '?'}) has no ` +
          'CAP_SYS_RESOURCE: CRIU cannot read its rlimits',
      ),
    );
  }
  return out;
}

function describeLock(l: LockInfo): string {
  return `${l.kind} ${l.mode}`;
}
