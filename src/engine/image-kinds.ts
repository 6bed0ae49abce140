// Every kind of CRIU image file: its magic (criu/include/magic.h), the schema of its entries (CRIU's
// images/*.proto, generated into ./criu-pb by hack/gen-proto.sh) and the raw data some kinds write after an
// entry. Pure data; src/engine/images.ts reads and writes the files with it.
//
// A file is: IMG_COMMON_MAGIC (IMG_SERVICE_MAGIC for stats-* and irmap-cache; nothing for inventory.img), the
// kind's magic, then entries, each a little-endian u32 length and one protobuf message, some followed by raw
// bytes (pipe and socket queue contents, TCP queues, IPC data, ghost file contents). A pagemap starts with a
// pagemap_head and a ghost file with a ghost_file_entry. Raw images (pages-*.img, tarballs, ip tool dumps)
// have no magic and no entries.

import { fromBinary, isMessage } from '@bufbuild/protobuf';
import type { DescMessage, Message } from '@bufbuild/protobuf';
import { apparmor_entrySchema } from './criu-pb/apparmor_pb.ts';
import { autofs_entrySchema } from './criu-pb/autofs_pb.ts';
import { binfmt_misc_entrySchema } from './criu-pb/binfmt-misc_pb.ts';
import { bpfmap_data_entrySchema } from './criu-pb/bpfmap-data_pb.ts';
import { bpfmap_file_entrySchema } from './criu-pb/bpfmap-file_pb.ts';
import { cgroup_entrySchema } from './criu-pb/cgroup_pb.ts';
import { core_entrySchema, task_kobj_ids_entrySchema } from './criu-pb/core_pb.ts';
import { cpuinfo_entrySchema } from './criu-pb/cpuinfo_pb.ts';
import { creds_entrySchema } from './criu-pb/creds_pb.ts';
import { eventfd_file_entrySchema } from './criu-pb/eventfd_pb.ts';
import { eventpoll_file_entrySchema, eventpoll_tfd_entrySchema } from './criu-pb/eventpoll_pb.ts';
import { ext_file_entrySchema } from './criu-pb/ext-file_pb.ts';
import { fdinfo_entrySchema, file_entrySchema } from './criu-pb/fdinfo_pb.ts';
import { irmap_cache_entrySchema } from './criu-pb/fh_pb.ts';
import { fifo_entrySchema } from './criu-pb/fifo_pb.ts';
import { file_lock_entrySchema } from './criu-pb/file-lock_pb.ts';
import { fs_entrySchema } from './criu-pb/fs_pb.ts';
import { fanotify_file_entrySchema, fanotify_mark_entrySchema, inotify_file_entrySchema, inotify_wd_entrySchema } from './criu-pb/fsnotify_pb.ts';
import { ghost_chunk_entrySchema, ghost_file_entrySchema } from './criu-pb/ghost-file_pb.ts';
import { inventory_entrySchema } from './criu-pb/inventory_pb.ts';
import { ipc_msg_entrySchema, ipc_msgSchema } from './criu-pb/ipc-msg_pb.ts';
import { ipc_sem_entrySchema } from './criu-pb/ipc-sem_pb.ts';
import { ipc_shm_entrySchema } from './criu-pb/ipc-shm_pb.ts';
import { ipc_var_entrySchema } from './criu-pb/ipc-var_pb.ts';
import { memfd_inode_entrySchema } from './criu-pb/memfd_pb.ts';
import { mm_entrySchema } from './criu-pb/mm_pb.ts';
import { mnt_entrySchema } from './criu-pb/mnt_pb.ts';
import { net_device_entrySchema, netns_entrySchema } from './criu-pb/netdev_pb.ts';
import { ns_file_entrySchema } from './criu-pb/ns_pb.ts';
import { packet_sock_entrySchema } from './criu-pb/packet-sock_pb.ts';
import { pagemap_entrySchema, pagemap_headSchema } from './criu-pb/pagemap_pb.ts';
import { pidfd_entrySchema } from './criu-pb/pidfd_pb.ts';
import { pidns_entrySchema } from './criu-pb/pidns_pb.ts';
import { pipe_data_entrySchema } from './criu-pb/pipe-data_pb.ts';
import { pipe_entrySchema } from './criu-pb/pipe_pb.ts';
import { pstree_entrySchema } from './criu-pb/pstree_pb.ts';
import { reg_file_entrySchema } from './criu-pb/regfile_pb.ts';
import { remap_file_path_entrySchema } from './criu-pb/remap-file-path_pb.ts';
import { rlimit_entrySchema } from './criu-pb/rlimit_pb.ts';
import { sa_entrySchema } from './criu-pb/sa_pb.ts';
import { seccomp_entrySchema } from './criu-pb/seccomp_pb.ts';
import { siginfo_entrySchema } from './criu-pb/siginfo_pb.ts';
import { signalfd_entrySchema } from './criu-pb/signalfd_pb.ts';
import { inet_sk_entrySchema } from './criu-pb/sk-inet_pb.ts';
import { netlink_sk_entrySchema } from './criu-pb/sk-netlink_pb.ts';
import { sk_packet_entrySchema } from './criu-pb/sk-packet_pb.ts';
import { unix_sk_entrySchema } from './criu-pb/sk-unix_pb.ts';
import { stats_entrySchema } from './criu-pb/stats_pb.ts';
import { tcp_stream_entrySchema } from './criu-pb/tcp-stream_pb.ts';
import { timens_entrySchema } from './criu-pb/timens_pb.ts';
import { itimer_entrySchema, posix_timer_entrySchema } from './criu-pb/timer_pb.ts';
import { timerfd_entrySchema } from './criu-pb/timerfd_pb.ts';
import { tunfile_entrySchema } from './criu-pb/tun_pb.ts';
import { tty_data_entrySchema, tty_file_entrySchema, tty_info_entrySchema } from './criu-pb/tty_pb.ts';
import { userns_entrySchema } from './criu-pb/userns_pb.ts';
import { utsns_entrySchema } from './criu-pb/utsns_pb.ts';
import { vma_entrySchema } from './criu-pb/vma_pb.ts';

export const IMG_COMMON_MAGIC = 0x54564319;
export const IMG_SERVICE_MAGIC = 0x55105940;

export interface ImageKind<S extends DescMessage = DescMessage> {
  /** CRIU's name for it (magic.h without _MAGIC). */
  name: string;
  magic: number;
  /** The magic before `magic`, or undefined for inventory.img (which has only its own). */
  head: number | undefined;
  /** The schema of every entry (but the first, when `first` is set). */
  schema: S;
  /** The schema of the first entry where it differs: pagemap_head, ghost_file_entry. */
  first?: DescMessage;
  /** How many of the bytes after `entry` (`rest`) are its raw data. */
  payload?: (entry: Message, rest: Buffer) => number;
}

const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to;

/** The messages of an IPC message queue: each a u32 length, an ipc_msg, and its text padded to 8 bytes. */
function ipcMsgQueueBytes(entry: Message, rest: Buffer): number {
  if (!isMessage(entry, ipc_msg_entrySchema)) return 0;
  let pos = 0;
  for (let i = 0; i < entry.qnum && pos + 4 <= rest.length; i++) {
    const len = rest.readUInt32LE(pos);
    const msg = fromBinary(ipc_msgSchema, rest.subarray(pos + 4, pos + 4 + len));
    pos += 4 + len + roundUp(msg.msize, 8);
  }
  return pos;
}

function payloadOf(entry: Message, rest: Buffer): number {
  if (isMessage(entry, pipe_data_entrySchema)) return entry.bytes;
  if (isMessage(entry, sk_packet_entrySchema)) return entry.length;
  if (isMessage(entry, tcp_stream_entrySchema)) return entry.inqLen + entry.outqLen;
  if (isMessage(entry, bpfmap_data_entrySchema)) return entry.keysBytes + entry.valuesBytes;
  if (isMessage(entry, ipc_sem_entrySchema)) return roundUp(2 * entry.nsems, 8);
  if (isMessage(entry, ipc_shm_entrySchema)) return entry.inPagemaps ? 0 : roundUp(Number(entry.size), 4);
  if (isMessage(entry, ghost_file_entrySchema)) return entry.chunks ? 0 : rest.length;
  if (isMessage(entry, ghost_chunk_entrySchema)) return Number(entry.len);
  return ipcMsgQueueBytes(entry, rest);
}

function k<S extends DescMessage>(name: string, magic: number, schema: S, more: Partial<Pick<ImageKind, 'head' | 'first' | 'payload'>> = {}): ImageKind<S> {
  return { name, magic, head: IMG_COMMON_MAGIC, schema, ...more };
}
const withPayload = { payload: payloadOf };

/** Every protobuf image kind CRIU 4.2 writes, by CRIU's name. */
export const KIND = {
  inventory: k('INVENTORY', 0x58313116, inventory_entrySchema, { head: undefined }),
  pstree: k('PSTREE', 0x50273030, pstree_entrySchema),
  fdinfo: k('FDINFO', 0x56213732, fdinfo_entrySchema),
  /** Also SHMEM_PAGEMAP (pagemap-shmem-*.img): the same magic and layout. */
  pagemap: k('PAGEMAP', 0x56084025, pagemap_entrySchema, { first: pagemap_headSchema }),
  core: k('CORE', 0x55053847, core_entrySchema),
  ids: k('IDS', 0x54432030, task_kobj_ids_entrySchema),
  vmas: k('VMAS', 0x54123737, vma_entrySchema),
  pipes: k('PIPES', 0x56513555, pipe_entrySchema),
  pipesData: k('PIPES_DATA', 0x56453709, pipe_data_entrySchema, withPayload),
  fifo: k('FIFO', 0x58364939, fifo_entrySchema),
  fifoData: k('FIFO_DATA', 0x59333054, pipe_data_entrySchema, withPayload),
  sigact: k('SIGACT', 0x55344201, sa_entrySchema),
  unixsk: k('UNIXSK', 0x54373943, unix_sk_entrySchema),
  inetsk: k('INETSK', 0x56443851, inet_sk_entrySchema),
  packetsk: k('PACKETSK', 0x60454618, packet_sock_entrySchema),
  itimers: k('ITIMERS', 0x57464056, itimer_entrySchema),
  posixTimers: k('POSIX_TIMERS', 0x52603957, posix_timer_entrySchema),
  skQueues: k('SK_QUEUES', 0x56264026, sk_packet_entrySchema, withPayload),
  utsns: k('UTSNS', 0x54473203, utsns_entrySchema),
  creds: k('CREDS', 0x54023547, creds_entrySchema),
  ipcVar: k('IPC_VAR', 0x53115007, ipc_var_entrySchema),
  ipcnsShm: k('IPCNS_SHM', 0x46283044, ipc_shm_entrySchema, withPayload),
  ipcnsMsg: k('IPCNS_MSG', 0x55453737, ipc_msg_entrySchema, withPayload),
  ipcnsSem: k('IPCNS_SEM', 0x59573019, ipc_sem_entrySchema, withPayload),
  regFiles: k('REG_FILES', 0x50363636, reg_file_entrySchema),
  extFiles: k('EXT_FILES', 0x59255641, ext_file_entrySchema),
  fs: k('FS', 0x51403912, fs_entrySchema),
  mm: k('MM', 0x57492820, mm_entrySchema),
  remapFpath: k('REMAP_FPATH', 0x59133954, remap_file_path_entrySchema),
  ghostFile: k('GHOST_FILE', 0x52583605, ghost_chunk_entrySchema, { first: ghost_file_entrySchema, ...withPayload }),
  tcpStream: k('TCP_STREAM', 0x51465506, tcp_stream_entrySchema, withPayload),
  eventfdFile: k('EVENTFD_FILE', 0x44523722, eventfd_file_entrySchema),
  eventpollFile: k('EVENTPOLL_FILE', 0x45023858, eventpoll_file_entrySchema),
  eventpollTfd: k('EVENTPOLL_TFD', 0x44433746, eventpoll_tfd_entrySchema),
  signalfd: k('SIGNALFD', 0x57323820, signalfd_entrySchema),
  inotifyFile: k('INOTIFY_FILE', 0x48424431, inotify_file_entrySchema),
  inotifyWd: k('INOTIFY_WD', 0x54562009, inotify_wd_entrySchema),
  mnts: k('MNTS', 0x55563928, mnt_entrySchema),
  netdev: k('NETDEV', 0x57373951, net_device_entrySchema),
  netns: k('NETNS', 0x55933752, netns_entrySchema),
  ttyFiles: k('TTY_FILES', 0x59433025, tty_file_entrySchema),
  ttyInfo: k('TTY_INFO', 0x59453036, tty_info_entrySchema),
  ttyData: k('TTY_DATA', 0x59413026, tty_data_entrySchema),
  fileLocks: k('FILE_LOCKS', 0x54323616, file_lock_entrySchema),
  rlimit: k('RLIMIT', 0x57113925, rlimit_entrySchema),
  fanotifyFile: k('FANOTIFY_FILE', 0x55096122, fanotify_file_entrySchema),
  fanotifyMark: k('FANOTIFY_MARK', 0x56506035, fanotify_mark_entrySchema),
  /** signal-s-*.img and signal-p-*.img (PSIGNAL has the same magic). */
  signal: k('SIGNAL', 0x59255647, siginfo_entrySchema),
  netlinkSk: k('NETLINK_SK', 0x58005614, netlink_sk_entrySchema),
  nsFiles: k('NS_FILES', 0x61394011, ns_file_entrySchema),
  tunfile: k('TUNFILE', 0x57143751, tunfile_entrySchema),
  cgroup: k('CGROUP', 0x59383330, cgroup_entrySchema),
  timerfd: k('TIMERFD', 0x50493712, timerfd_entrySchema),
  cpuinfo: k('CPUINFO', 0x61404013, cpuinfo_entrySchema),
  userns: k('USERNS', 0x55474906, userns_entrySchema),
  seccomp: k('SECCOMP', 0x64413049, seccomp_entrySchema),
  binfmtMisc: k('BINFMT_MISC', 0x67343323, binfmt_misc_entrySchema),
  autofs: k('AUTOFS', 0x49353943, autofs_entrySchema),
  files: k('FILES', 0x56303138, file_entrySchema),
  memfdInode: k('MEMFD_INODE', 0x48453499, memfd_inode_entrySchema),
  timens: k('TIMENS', 0x43114433, timens_entrySchema),
  pidns: k('PIDNS', 0x61157326, pidns_entrySchema),
  bpfmapFile: k('BPFMAP_FILE', 0x57506142, bpfmap_file_entrySchema),
  bpfmapData: k('BPFMAP_DATA', 0x64324033, bpfmap_data_entrySchema, withPayload),
  apparmor: k('APPARMOR', 0x59423047, apparmor_entrySchema),
  pidfd: k('PIDFD', 0x54435556, pidfd_entrySchema),
  stats: k('STATS', 0x57093306, stats_entrySchema, { head: IMG_SERVICE_MAGIC }),
  irmapCache: k('IRMAP_CACHE', 0x57004059, irmap_cache_entrySchema, { head: IMG_SERVICE_MAGIC }),
} as const satisfies Record<string, ImageKind>;
