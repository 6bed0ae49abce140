// `migprobe` entry point: wires the real engine and the process streams to runCli, sets the exit code.

import { checkContainer, checkRestoreOnly } from '../engine/index.ts';
import { collectNodeFacts } from '../engine/index.ts';
import { resolveCriu } from '../engine/index.ts';
import { runtimeSocketProblem } from '../engine/index.ts';
import { runCli } from './cli.ts';
import type { CliDeps } from './cli.ts';
import { migprobeVersion } from '../version.ts';

const deps: CliDeps = {
  checkContainer: (ref, opts, target, io) => checkContainer(ref, opts, target, io),
  checkRestoreOnly: (src, opts, target, io) => checkRestoreOnly(src, opts, target, io),
  nodeFacts: async () => collectNodeFacts((await resolveCriu()).path),
  runtimeSocketProblem: (address) => runtimeSocketProblem(address),
  version: migprobeVersion,
};

try {
  process.exitCode = await runCli(process.argv.slice(2), deps, {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
  });
} catch (err) {
  process.stderr.write(`migprobe: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 2;
}
