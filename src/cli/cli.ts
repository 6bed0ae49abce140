// The CLI's behaviour, with its engine calls injected so the output and exit codes are unit-testable.
// src/cli/main.ts wires the real engine and process streams to it.

import type { Verdict } from '../verdict.ts';
import type { ContainerRef, NodeFacts, ProbeOptions, TargetRoot } from '../engine/index.ts';
import type { ProbeDetail } from '../engine/index.ts';
import { formatFacts, formatVerdict } from './format.ts';
import { EXIT_ERROR, EXIT_MIGRATABLE, EXIT_NOT_MIGRATABLE } from './exit-codes.ts';
import { USAGE, UsageError, parseArgs } from './args.ts';
import { RuntimeSocketError } from '../engine/index.ts';
import { DEFAULT_CONTAINERD_ADDRESS } from '../engine/index.ts';

export interface CliDeps {
  checkContainer(
    ref: ContainerRef,
    opts: ProbeOptions,
    target: TargetRoot,
    io: { workDir?: string; detail?: ProbeDetail },
  ): Promise<Verdict>;
  checkRestoreOnly(
    src: { imagesDir: string } | { archive: string },
    opts: ProbeOptions,
    target: TargetRoot,
    io: { detail?: ProbeDetail },
  ): Promise<Verdict>;
  nodeFacts(): Promise<NodeFacts>;
  version(): Promise<string>;
  /** What is wrong with a containerd socket path (undefined: it is a socket). */
  runtimeSocketProblem(address: string): string | undefined;
}

export interface CliIo {
  out(s: string): void;
  err(s: string): void;
}

export { EXIT_ERROR, EXIT_MIGRATABLE, EXIT_NOT_MIGRATABLE } from './exit-codes.ts';

/** A containerd socket that is not there: a usage error, named by the flag that sets it. */
function socketUsage(address: string, problem: string, restoreOnly: boolean): string {
  const alt = restoreOnly ? ", or the checkpoint's root filesystem with --target-root DIR" : '';
  return `no containerd socket at ${address} (${problem}): give this node's containerd socket with --address SOCK${alt}`;
}

/** The socket a container reference makes the probe dial, if any. Pure. */
function containerdAddressOf(ref: ContainerRef): string | undefined {
  return 'containerId' in ref ? (ref.containerdAddress ?? DEFAULT_CONTAINERD_ADDRESS) : undefined;
}

/** Errors the engine throws for user-facing problems (bad PID, unknown container) carry `exitCode` 2 too. */
function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

export async function runCli(argv: readonly string[], deps: CliDeps, io: CliIo): Promise<number> {
  let cmd;
  try {
    cmd = parseArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`migprobe: ${err.message}\nRun 'migprobe --help' for usage.\n`);
      return EXIT_ERROR;
    }
    throw err;
  }
  try {
    switch (cmd.kind) {
      case 'help':
        io.out(USAGE);
        return 0;
      case 'version':
        io.out(`migprobe ${await deps.version()}\n`);
        return 0;
      case 'facts': {
        const f = await deps.nodeFacts();
        io.out(cmd.json ? `${JSON.stringify(f, null, 2)}\n` : formatFacts(f));
        return 0;
      }
      case 'check':
      case 'restore-check': {
        // Before any wait: a socket the command will dial must exist (restore-check dials the default socket only
        // when the checkpoint's image must come from containerd; the engine says so with RuntimeSocketError).
        const address = cmd.kind === 'restore-check' ? cmd.target.containerdAddress : containerdAddressOf(cmd.ref);
        const problem = address === undefined ? undefined : deps.runtimeSocketProblem(address);
        if (address !== undefined && problem !== undefined) {
          io.err(`migprobe: ${socketUsage(address, problem, cmd.kind === 'restore-check')}\n`);
          return EXIT_ERROR;
        }
        const detail: ProbeDetail = {};
        const withDetail = cmd.verbose ? { detail } : {};
        const v =
          cmd.kind === 'check'
            ? await deps.checkContainer(cmd.ref, cmd.opts, cmd.target, {
                ...withDetail,
                ...(cmd.workDir === undefined ? {} : { workDir: cmd.workDir }),
              })
            : await deps.checkRestoreOnly(cmd.src, cmd.opts, cmd.target, withDetail);
        io.out(cmd.json ? `${JSON.stringify(v, null, 2)}\n` : formatVerdict(v, process.stdout.columns ?? 100));
        if (cmd.verbose) io.err(formatDetail(detail));
        return v.migratable ? EXIT_MIGRATABLE : EXIT_NOT_MIGRATABLE;
      }
    }
  } catch (err) {
    if (err instanceof RuntimeSocketError) {
      io.err(`migprobe: ${socketUsage(err.address, err.problem, cmd.kind === 'restore-check')}\n`);
      return EXIT_ERROR;
    }
    io.err(`migprobe: ${describe(err)}\n`);
    return EXIT_ERROR;
  }
}

/** The evidence behind a verdict, for --verbose (stderr, so --json output stays exactly the Verdict). */
export function formatDetail(d: ProbeDetail): string {
  const out: string[] = [];
  const p = d.restoreProof;
  if (p !== undefined) {
    const pids = Object.keys(p.cpuTicksBefore);
    const still = pids.every((pid) => p.cpuTicksAfter[pid] === p.cpuTicksBefore[pid]);
    const states = [...new Set(Object.values(p.states))].join(' ') || '-';
    out.push(
      `restore proof: ${pids.length} restored task(s), states ${states}, CPU time ${still ? 'unchanged' : 'MOVED'}` +
        ` (ticks ${JSON.stringify(p.cpuTicksBefore)} -> ${JSON.stringify(p.cpuTicksAfter)})`,
      `leftovers after teardown: ${p.leftovers.length === 0 ? 'none' : p.leftovers.join(', ')}`,
    );
    if (p.freezeStatesNotRestored !== undefined) {
      out.push(`freeze state in the images, not restored (the tasks were restored stopped): ${p.freezeStatesNotRestored.join(', ')}`);
    }
    if (p.thawed !== undefined) out.push(`frozen cgroups thawed by teardown: ${p.thawed.join(', ')}`);
  } else {
    out.push('restore proof: none (no restore ran)');
  }
  if (d.dumpRecovery !== undefined && d.dumpRecovery.length > 0) out.push(`dump recovery: ${d.dumpRecovery.join('; ')}`);
  if (d.pagemap !== undefined) out.push(`pagemap fix: ${JSON.stringify(d.pagemap)}`);
  return out.join('\n') + '\n';
}
