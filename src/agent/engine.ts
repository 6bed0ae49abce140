// Loads the probe engine for the agent. The engine modules are imported by path at run time so the agent
// keeps building while engine files are being written; the shapes are the contract of src/engine/api.ts.

import type { AgentEngine } from './server.ts';
import { recoverFrozen } from '../engine/dump.ts';

export { recoverFrozen };

export async function loadEngine(): Promise<AgentEngine> {
  const probePath = '../engine/probe.ts';
  const factsPath = '../engine/facts.ts';
  const probe = (await import(probePath)) as Pick<AgentEngine, 'sourceDumpCheck' | 'targetRestoreCheck'>;
  const facts = (await import(factsPath)) as Pick<AgentEngine, 'collectNodeFacts'>;
  return { sourceDumpCheck: probe.sourceDumpCheck, targetRestoreCheck: probe.targetRestoreCheck, collectNodeFacts: facts.collectNodeFacts };
}
