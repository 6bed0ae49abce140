// The engine's one face: what the CLI, the agent, the agent API and the controller may use of the engine.
// Everything else in src/engine is internal (eslint's no-restricted-imports keeps that boundary); tests
// and benches may reach inside.

export { CONTAINER_ID_RE, DEFAULT_PROBE_OPTIONS, NON_LAZY_MEMORY_LIMIT_BYTES } from './api.ts';
export type { ContainerRef, DumpCheckResult, NodeFacts, ProbeOptions, RestoreCheckResult, TargetRoot } from './api.ts';
export type { CheckpointSource } from './checkpoint.ts';
export { composeVerdict, hasImages, stagePhase } from './compose.ts';
export type { ProbeStage, TransferOutcome } from './compose.ts';
export { DEFAULT_CONTAINERD_ADDRESS } from './container.ts';
export { criuTooOld, resolveCriu } from './criu.ts';
export { RuntimeSocketError, runtimeSocketProblem } from './ctr.ts';
export { recoverFrozen } from './dump.ts';
export { compareFacts } from './compat.ts';
export { collectNodeFacts, sha256File } from './facts.ts';
export { ManifestError, parseNodeFacts } from './manifest.ts';
export { checkContainer, checkRestoreOnly, defaultProbeDeps, sourceDumpCheck, targetRestoreCheck } from './probe.ts';
export type { ProbeDetail } from './probe.ts';
export { ROOTFS_DIFF } from './restore.ts';
export { checkRootfsDiff, checkRootfsDiffStream, readThrough } from './rootfs-diff.ts';
