// The verdict: one typed object, printed by `migprobe check --json` and written by the operator into
// MigrationProbe.status. Pure types and constructors; no I/O.

/** Where in the probe a blocker was found. */
export type ProbePhase = 'preflight' | 'dump' | 'transfer' | 'restore' | 'compat' | 'setup';

/**
 * Stable CamelCase reason codes. They are API: never rename one, only add. Each is documented in the
 * README under "Troubleshooting by reason code", and has a default message and fix hint in reasons.ts.
 */
export const REASON_CODES = [
  // preflight (read from /proc before anything is frozen)
  'TCPEstablished',
  'ExternalUnixSocket',
  'IoUring',
  'MemfdSecret',
  'DeviceFile',
  'GhostFileTooLarge',
  'FileLocks',
  'Ptraced',
  'UnsupportedSocket',
  'UnsupportedFile',
  'Uprobes',
  'InsufficientPrivileges',
  'UnsupportedMount',
  'LinkRemapNeeded',
  'NestedNamespace',
  'NonLazyMemory',
  // dump
  'FreezeBudgetExceeded',
  'DumpFailed',
  // transfer
  'TransferFailed',
  'ImageTooLarge',
  // restore
  'RestoreFailed',
  'NetworkDeviceMissing',
  // compat (node pair)
  'CPUIncompatible',
  'KernelFeatureMissing',
  'KernelMismatch',
  'ArchMismatch',
  'CRIUTooOld',
  'InsufficientMemory',
  'RootfsMismatch',
  // anywhere
  'Timeout',
  'InternalError',
  // operator-side (user input and cluster state)
  'PodNotFound',
  'PodNotRunning',
  'ContainerNotFound',
  'TargetNodeNotFound',
  'TargetNodeNotReady',
  'SameNode',
  'AgentUnavailable',
  'CheckpointNotFound',
  'InvalidSpec',
  // agent-side authorization (a request not backed by the live probe, a checkpoint of another namespace)
  'ProbeNotFound',
  'ProbeMismatch',
  'CheckpointNotAllowed',
  // fleet readiness: a candidate target screened out before any dump
  'TargetNodeUnschedulable',
  'NodeFactsUnknown',
] as const;

export type ReasonCode = (typeof REASON_CODES)[number];

export function isReasonCode(s: string): s is ReasonCode {
  return (REASON_CODES as readonly string[]).includes(s);
}

/** One blocker. `message` says what was found, `hint` what the user can do about it. */
export interface Reason {
  code: ReasonCode;
  message: string;
  hint: string;
  phase: ProbePhase;
}

/** Milliseconds. `freeze` is the pause the workload felt, measured from the workload side. */
export interface Timings {
  preflightMs?: number;
  freezeMs?: number;
  dumpMs?: number;
  transferMs?: number;
  restoreMs?: number;
  totalMs?: number;
}

export interface Sizes {
  /** Bytes of the CRIU image set written by the dump check (no memory page contents). */
  imageBytes?: number;
  /** Bytes sent from the source to the target (the compressed image set). */
  shippedBytes?: number;
  /** Resident memory of the container's process tree. */
  workloadRssBytes?: number;
  /** Memory CRIU writes into the image set even with --lazy-pages, by kind (found by the preflight). */
  nonLazyMemory?: NonLazyMemory;
}

/**
 * Memory whose contents CRIU dumps into the image set (and so to the source node's disk and over the wire)
 * even in lazy mode, in bytes. Only private anonymous pages that are not mlock'ed are left behind.
 */
export interface NonLazyMemory {
  /** The sum of the kinds below. */
  totalBytes: number;
  /** mlock'ed private anonymous pages (VmFlags lo). */
  mlockedBytes: number;
  /** MAP_SHARED anonymous memory and memfds (each object once, however many tasks map it). */
  sharedMemoryBytes: number;
  /** SysV shared memory segments of the container's IPC namespace, attached or not. */
  sysvShmBytes: number;
  /** Copy-on-write (written) pages of private file mappings: data segments, MAP_PRIVATE files. */
  dirtyPrivateFileBytes: number;
  /** Files on the container's tmpfs mounts that CRIU archives (not made external): /dev/shm files, for one. */
  tmpfsBytes: number;
}

export interface CriuVersions {
  source?: string;
  target?: string;
}

export interface Verdict {
  migratable: boolean;
  reasons: Reason[];
  timings: Timings;
  sizes: Sizes;
  criu: CriuVersions;
  /** A short excerpt of CRIU's log (its error lines) when a CRIU step failed. */
  criuLogExcerpt?: string;
}

/** A verdict is migratable exactly when it names no blocker. */
export function makeVerdict(parts: Omit<Verdict, 'migratable'>): Verdict {
  return { migratable: parts.reasons.length === 0, ...parts };
}
