// The catalog of every reason code: the phase it is normally found in, what it means, and what the user can
// do about it. Pure. The README's "Troubleshooting by reason code" section is checked against this catalog
// (see reasons.test.ts), so a new code in src/verdict.ts needs an entry here first.

import { REASON_CODES } from './verdict.ts';
import type { ProbePhase, Reason, ReasonCode } from './verdict.ts';

export interface ReasonInfo {
  /** The phase a reason with this code is normally reported in (callers may override it). */
  phase: ProbePhase;
  /** One line: what the code means. */
  description: string;
  /** One line: the concrete fix. */
  hint: string;
}

/** The fix for a listener's connections not yet accepted (preflight's finding and CRIU's own error). */
export const IN_FLIGHT_HINT =
  'set options.tcpSkipInFlight: true (CLI --skip-in-flight, CRIU --skip-in-flight) if those clients may see their ' +
  'connection fail (they are dropped), or probe again once the workload has accepted them';

export const REASON_CATALOG: Readonly<Record<ReasonCode, ReasonInfo>> = {
  TCPEstablished: {
    phase: 'preflight',
    description: 'A task of the container holds an established (or half-closed) TCP connection.',
    hint:
      'set options.tcpEstablished: true (CLI --tcp-established, CRIU --tcp-established) if the peer can tolerate a ' +
      'repaired connection and the target carries the same IP address, or options.tcpClose: true (CLI --tcp-close, ' +
      'CRIU --tcp-close) to carry them closed (the peers see them end), or close the connections before the migration',
  },
  ExternalUnixSocket: {
    phase: 'preflight',
    description: 'A unix socket of the container is connected to a peer outside the container.',
    hint:
      'set options.extUnixSockets: true (CLI --ext-unix-sk, CRIU --ext-unix-sk) if the peer will exist on the target ' +
      'and reconnect, or make the workload close the connection before the migration',
  },
  IoUring: {
    phase: 'preflight',
    description: 'A task holds an io_uring instance; CRIU cannot checkpoint io_uring.',
    hint: 'no CRIU option allows it: run the workload without io_uring (most runtimes have an epoll fallback)',
  },
  MemfdSecret: {
    phase: 'preflight',
    description: 'A task holds a memfd_secret area, whose memory even CRIU cannot read.',
    hint: 'no CRIU option allows it: the secret memory cannot leave the node; disable memfd_secret in the workload',
  },
  DeviceFile: {
    phase: 'preflight',
    description: 'A task holds an open device file that CRIU cannot carry (only mem devices, tty/pty, tun and autofs are).',
    hint: 'close the device before the migration, or keep this workload on its node (the device is node hardware)',
  },
  GhostFileTooLarge: {
    phase: 'preflight',
    description: 'A task holds a deleted-but-open file larger than the ghost file limit; CRIU would copy it into the images.',
    hint: 'raise options.ghostLimitBytes (CLI --ghost-limit, CRIU --ghost-limit) above the file size, or close the file',
  },
  FileLocks: {
    phase: 'preflight',
    description: 'A task holds file locks (POSIX, flock or OFD).',
    hint:
      'set options.fileLocks: true (CLI --file-locks, CRIU --file-locks) if the locked files are private to the ' +
      'container, or release the locks before the migration',
  },
  Ptraced: {
    phase: 'preflight',
    description: 'A task is being traced (a debugger or strace is attached); CRIU must be its only tracer.',
    hint: 'detach the debugger or tracer (the TracerPid named in the message) and probe again',
  },
  UnsupportedSocket: {
    phase: 'preflight',
    description: 'A task holds a socket of a family or type CRIU cannot dump (e.g. AF_ALG, AF_VSOCK, AF_XDP, SCTP, bluetooth).',
    hint: 'close that socket before the migration; no CRIU option can carry it',
  },
  UnsupportedFile: {
    phase: 'preflight',
    description: 'A task holds a special file CRIU cannot dump (e.g. userfaultfd, perf_event, or another anon inode kind it does not know).',
    hint: 'close that file before the migration (the message names the task, the fd and its kind); no CRIU option can carry it',
  },
  Uprobes: {
    phase: 'preflight',
    description:
      'A task has a [uprobes] mapping: a tracing tool (an eBPF agent, perf, bpftrace) attached a uprobe to its code; CRIU 4.2 refuses it unless told.',
    hint:
      'probe with --allow-uprobes (CLI; CRIU --allow-uprobes on dump and restore) if the process may migrate without ' +
      'its probe (the tracing tool must attach again on the target), or detach the tracing tool first',
  },
  InsufficientPrivileges: {
    phase: 'preflight',
    description:
      'CRIU runs without a capability this workload needs: without CAP_SYS_RESOURCE it cannot read the rlimits of a task of another user.',
    hint:
      'run migprobe with CAP_SYS_RESOURCE (the chart\'s agent.privileged: true, or SYS_RESOURCE in ' +
      'agent.capabilities; the CLI as full root), or run the workload as the user migprobe runs as',
  },
  UnsupportedMount: {
    phase: 'dump',
    description:
      'A mount of the container cannot be carried as it is: its source lies outside the container\'s root (a bind from a host path the runtime did not set up) or it shares propagation with mounts outside.',
    hint:
      'have the runtime set the mount up (a volume or hostPath: migprobe declares those external, as runtimes ' +
      'do), or make it private; CRIU\'s own remedies (--external mnt[...], --enable-external-sharing, ' +
      '--enable-external-masters) need the same mount on the target',
  },
  LinkRemapNeeded: {
    phase: 'dump',
    description:
      'A task holds an open file that was unlinked (or overmounted) but still has data CRIU can only reach by linking it back under a temporary name.',
    hint:
      'set options.linkRemap: true (CLI --link-remap, CRIU --link-remap) if CRIU may link the file back into its ' +
      'folder for the length of the dump (the migration carries that link with the container\'s files), or close ' +
      'or reopen the file before the migration',
  },
  NestedNamespace: {
    phase: 'dump',
    description: 'A task of the container made a namespace of its own of a kind CRIU cannot dump nested (a time namespace).',
    hint: 'run the workload without its own time namespace (unshare --time / clone3 CLONE_NEWTIME); no CRIU option carries a nested one',
  },
  NonLazyMemory: {
    phase: 'preflight',
    description:
      'The container holds more memory than the non-lazy memory limit of kinds CRIU writes into the image set even in lazy ' +
      'mode (mlock\'ed, shared anonymous or memfd, SysV shm, written private file mappings, archived tmpfs files), so the ' +
      'dump check would write it to the node\'s disk and ship it.',
    hint:
      'raise spec.options.nonLazyMemoryLimitBytes (CLI --non-lazy-memory-limit) above the size in the message if the node\'s ' +
      'disk and the network may carry it, or probe when the workload holds less of it',
  },
  FreezeBudgetExceeded: {
    phase: 'dump',
    description: 'The dump check froze the workload longer than the freeze budget allows.',
    hint: 'raise spec.options.freezeBudgetMilliseconds (CLI --freeze-budget) if the workload tolerates it, or reduce its memory and mounts',
  },
  DumpFailed: {
    phase: 'dump',
    description: 'criu dump failed for a reason migprobe has no specific code for; see the CRIU log excerpt.',
    hint: 'read the CRIU log excerpt in the verdict; the first "Error (" line names the cause',
  },
  TransferFailed: {
    phase: 'transfer',
    description: 'The image set could not be sent from the source to the target.',
    hint: 'check that the agents on both nodes are up and can reach each other, then probe again',
  },
  ImageTooLarge: {
    phase: 'transfer',
    description: 'The image set is larger than the transfer size cap.',
    hint: 'reduce ghost files and tmpfs contents of the container, or raise the agent transfer size cap',
  },
  RestoreFailed: {
    phase: 'restore',
    description: 'criu restore failed in the sandbox for a reason migprobe has no specific code for.',
    hint: 'read the CRIU log excerpt in the verdict; the first "Error (" line names the cause',
  },
  NetworkDeviceMissing: {
    phase: 'restore',
    description:
      'A socket is bound to a network device the container made itself (SO_BINDTODEVICE); the target gives the container a network namespace of its own (as runc and CNI do), without that device.',
    hint:
      'bind the socket to an address instead of a device, or have the workload create the device again after the ' +
      'migration; no CRIU option carries devices into a network namespace the runtime provides',
  },
  CPUIncompatible: {
    phase: 'compat',
    description: 'The target CPU lacks instruction set features the source CPU has, which the workload may use.',
    hint: 'choose a target node with the same or a newer CPU model (or the same CPU model in the hypervisor)',
  },
  KernelFeatureMissing: {
    phase: 'compat',
    description: 'A kernel feature CRIU uses for the restore is present on the source and missing on the target.',
    hint: 'choose a target node whose kernel supports the named feature (criu check --feature <name>), or upgrade it',
  },
  KernelMismatch: {
    phase: 'compat',
    description: 'The target kernel is older than the source kernel; the workload may already use what the older lacks.',
    hint: 'choose a target node with the same or a newer kernel release',
  },
  ArchMismatch: {
    phase: 'compat',
    description: 'Source and target have different CPU architectures; a checkpoint never crosses architectures.',
    hint: 'choose a target node of the same architecture (kubernetes.io/arch)',
  },
  CRIUTooOld: {
    phase: 'compat',
    description: 'The CRIU on a node is older than the minimum migprobe supports (4.2.0).',
    hint: 'install CRIU 4.2.0 or newer on that node (or point MIGPROBE_CRIU at it)',
  },
  InsufficientMemory: {
    phase: 'compat',
    description: 'The target has less available memory than the workload resident memory plus a safety margin.',
    hint: 'free memory on the target node or choose a node with more MemAvailable',
  },
  RootfsMismatch: {
    phase: 'compat',
    description: 'An executable or mapped library of the workload is missing or different in the target root filesystem.',
    hint: 'make the target use the same image (by digest) as the source, and do not modify image files in place',
  },
  Timeout: {
    phase: 'dump',
    description: 'A step of the probe did not finish within its time bound and was stopped.',
    hint: 'raise spec.timeoutSeconds (CLI --timeout) if the node is slow; the CRIU log excerpt shows where it stopped',
  },
  InternalError: {
    phase: 'setup',
    description: 'migprobe itself failed (a bug or an unexpected environment), not the workload.',
    hint: 'read the message; report it with the CRIU log excerpt if it looks like a bug',
  },
  PodNotFound: {
    phase: 'setup',
    description: 'The pod named in the probe does not exist in the probe namespace.',
    hint: 'fix spec.podName; a probe can only target pods in its own namespace',
  },
  PodNotRunning: {
    phase: 'setup',
    description: 'The pod is not running (or not yet scheduled), so there is nothing to checkpoint.',
    hint: 'wait until the pod is Running and probe again',
  },
  ContainerNotFound: {
    phase: 'setup',
    description: 'The container (by name, ID or PID) does not exist or is not running.',
    hint: 'fix spec.containerName (or the CLI --container/--pid); the container must be running',
  },
  TargetNodeNotFound: {
    phase: 'setup',
    description: 'The target node does not exist.',
    hint: 'fix spec.targetNodeName (kubectl get nodes)',
  },
  TargetNodeNotReady: {
    phase: 'setup',
    description: 'The target node is not Ready.',
    hint: 'wait until the node is Ready or choose another target node',
  },
  SameNode: {
    phase: 'setup',
    description: 'The target node is the node the pod already runs on.',
    hint: 'choose a different spec.targetNodeName',
  },
  AgentUnavailable: {
    phase: 'setup',
    description: 'The migprobe agent on a node involved did not answer.',
    hint: 'check the migprobe agent DaemonSet pod on that node (kubectl -n <release namespace> get pods -o wide)',
  },
  CheckpointNotFound: {
    phase: 'setup',
    description: 'The checkpoint named for a restore-only probe does not exist or cannot be read.',
    hint: 'fix the checkpoint reference (an image folder or a checkpoint archive readable by the agent)',
  },
  InvalidSpec: {
    phase: 'setup',
    description: 'The probe spec is invalid.',
    hint: 'fix the spec as the message says (kubectl explain migrationprobe.spec)',
  },
  ProbeNotFound: {
    phase: 'setup',
    description: 'The agent found no live MigrationProbe with this UID in the pod\'s namespace (none, another UID, finished or being deleted): it works only for a probe it reads itself.',
    hint: 'create the MigrationProbe in the namespace of spec.podName; if it exists, the controller and agents may be of different versions (helm upgrade both)',
  },
  ProbeMismatch: {
    phase: 'setup',
    description: 'The MigrationProbe the agent read names another pod, container or target node than the request.',
    hint: 'a controller of another migprobe version, or a caller that is not the controller: run the chart\'s controller; check spec.podName, spec.containerName, spec.targetNodeName',
  },
  CheckpointNotAllowed: {
    phase: 'setup',
    description: 'The restore-only checkpoint does not provably belong to the probe\'s namespace.',
    hint: 'keep the kubelet\'s name checkpoint-<pod>_<namespace>-<container>-<time>.tar, or put it in <checkpoint folder>/<namespace>/ (spec.checkpoint.path)',
  },
  TargetNodeUnschedulable: {
    phase: 'setup',
    description: 'A candidate target node of a MigrationReadiness is cordoned (spec.unschedulable): nothing could be moved there, so it is screened out before any dump.',
    hint: 'kubectl uncordon the node if it should take pods, or leave it out of the readiness (spec.targets.nodeNames / spec.targets.nodeSelector)',
  },
  NodeFactsUnknown: {
    phase: 'compat',
    description: 'No MigrationNode facts (architecture, kernel, CRIU) are published for a node of the pair, so its static compatibility cannot be judged; the pair is screened out before any dump.',
    hint: 'check the migprobe agent on that node (it publishes the MigrationNode named after the node: kubectl get migrationnodes), or declare the facts in the MigrationNode\'s spec.factsOverride',
  },
};

/** Build a reason with the catalog's phase and hint unless overridden. */
export function reason(code: ReasonCode, message: string, hintOverride?: string, phaseOverride?: ProbePhase): Reason {
  const info = REASON_CATALOG[code];
  return {
    code,
    message,
    hint: hintOverride ?? info.hint,
    phase: phaseOverride ?? info.phase,
  };
}

/** Every code of src/verdict.ts, in its order, with its catalog entry. */
export function catalogEntries(): { code: ReasonCode; info: ReasonInfo }[] {
  return REASON_CODES.map((code) => ({ code, info: REASON_CATALOG[code] }));
}

/** Markdown for the README's "Troubleshooting by reason code" section, generated from the catalog. */
export function catalogMarkdown(): string {
  const rows = catalogEntries().map(
    ({ code, info }) => `| \`${code}\` | ${info.phase} | ${info.description} | ${info.hint} |`,
  );
  return ['| Code | Phase | What it means | How to fix it |', '|---|---|---|---|', ...rows].join('\n') + '\n';
}
