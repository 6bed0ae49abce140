// The probe engine's public contract. The CLI (src/cli) and the node agent (src/agent) use only what is
// declared here; src/engine/*.ts implements it. Types only.

import type { Reason, Sizes, Timings } from '../verdict.ts';

/** What the user allows CRIU to handle, and the bounds of the check. */
export interface ProbeOptions {
  /** Allow established TCP connections (CRIU --tcp-established). */
  tcpEstablished: boolean;
  /** Allow held file locks (CRIU --file-locks). */
  fileLocks: boolean;
  /** Allow unix sockets whose peer is outside the container (CRIU --ext-unix-sk). */
  extUnixSockets: boolean;
  /** Largest deleted-but-open file CRIU may carry in the images (CRIU --ghost-limit). */
  ghostLimitBytes: number;
  /** Longest pause the workload may feel; a longer one is a blocker (FreezeBudgetExceeded). */
  freezeBudgetMs: number;
  /** Hard bound on every CRIU call. */
  timeoutMs: number;
  /** Allow tasks with a uprobe attached (CRIU --allow-uprobes on dump and restore). Default false. */
  allowUprobes?: boolean;
  /**
   * Most memory of the kinds CRIU dumps whatever --lazy-pages says (sizes.nonLazyMemory) the dump check may write;
   * above it the preflight refuses (NonLazyMemory) before anything is written. Default NON_LAZY_MEMORY_LIMIT_BYTES.
   */
  nonLazyMemoryLimitBytes?: number;
  /**
   * Carry established TCP connections closed: the target restores them shut down and the peers see them end
   * (CRIU --tcp-close on dump and restore). Default false.
   */
  tcpClose?: boolean;
  /** Drop connections a listening socket has not accepted yet; their clients see them fail (CRIU --skip-in-flight). Default false. */
  tcpSkipInFlight?: boolean;
  /**
   * Carry an unlinked open file that still has other links by linking it back under a temporary name in its
   * folder during the dump (CRIU --link-remap; with --leave-running CRIU removes the link after the dump). Default false.
   */
  linkRemap?: boolean;
}

/** The default of ProbeOptions.nonLazyMemoryLimitBytes: 64 MiB. */
export const NON_LAZY_MEMORY_LIMIT_BYTES = 64 * 1024 * 1024;

export const DEFAULT_PROBE_OPTIONS: ProbeOptions = {
  tcpEstablished: false,
  fileLocks: false,
  extUnixSockets: false,
  ghostLimitBytes: 1024 * 1024,
  freezeBudgetMs: 2000,
  timeoutMs: 60_000,
  nonLazyMemoryLimitBytes: NON_LAZY_MEMORY_LIMIT_BYTES,
};

/** A container ID as containerd, runc and the CRI accept it (and nothing option-like or path-like). */
export const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** How to find the container: a host PID, or a containerd container ID. */
export type ContainerRef =
  | { pid: number }
  | { containerId: string; namespace?: string; containerdAddress?: string };

/** Facts about one node that decide whether a checkpoint from another node can restore on it. */
export interface NodeFacts {
  hostname: string;
  arch: string;
  kernelRelease: string;
  criuVersion: string;
  /** `criu check --feature X` results for the features migprobe cares about. */
  criuFeatures: Record<string, boolean>;
  memAvailableBytes: number;
  cpu: { vendor: string; model: string; flags: string[] };
}

/** Result of the source side: preflight, then the dump check (when preflight found no blocker). */
export interface DumpCheckResult {
  reasons: Reason[];
  timings: Pick<Timings, 'preflightMs' | 'freezeMs' | 'dumpMs'>;
  sizes: Pick<Sizes, 'imageBytes' | 'workloadRssBytes' | 'nonLazyMemory'>;
  criuVersion: string;
  /** Folder holding the image set (CRIU images without memory contents, plus manifest.json). */
  bundleDir?: string;
  criuLogExcerpt?: string;
}

/** Where the target side takes the container's root filesystem from. */
export interface TargetRoot {
  /**
   * Explicit lower directory for the sandbox overlay (the root filesystem as the target node would have
   * it). When absent, the engine uses the image named in the bundle's manifest from the local containerd.
   */
  rootfs?: string;
  containerdAddress?: string;
  namespace?: string;
}

/** Result of the target side: compatibility checks and the restore check. */
export interface RestoreCheckResult {
  reasons: Reason[];
  timings: Pick<Timings, 'restoreMs'>;
  criuVersion: string;
  facts: NodeFacts;
  criuLogExcerpt?: string;
}
