// The probe engine as the agent uses it (src/engine/api.ts contract).

import type { AgentEngine } from './deps.ts';
import { checkRestoreOnly, defaultProbeDeps, sourceDumpCheck, targetRestoreCheck } from '../engine/index.ts';
import { collectNodeFacts } from '../engine/index.ts';
import { recoverFrozen } from '../engine/index.ts';

export { recoverFrozen };

export function loadEngine(): Promise<AgentEngine> {
  return Promise.resolve({
    sourceDumpCheck: (ref, opts, workDir, signal) => sourceDumpCheck(ref, opts, workDir, defaultProbeDeps, signal),
    targetRestoreCheck: (bundleDir, opts, target, facts, workDir) => targetRestoreCheck(bundleDir, opts, target, facts, defaultProbeDeps, workDir),
    collectNodeFacts: (criu) => collectNodeFacts(criu),
    checkRestoreOnly: (src, opts, target, workDir) => checkRestoreOnly(src, opts, target, workDir === undefined ? {} : { workDir }),
  });
}
