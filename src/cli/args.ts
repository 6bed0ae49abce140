// `migprobe` argument parsing. Pure: argv in, a typed command out, or a UsageError.

import { CONTAINER_ID_RE, DEFAULT_PROBE_OPTIONS } from '../engine/index.ts';
import type { ContainerRef, ProbeOptions, TargetRoot } from '../engine/index.ts';

export class UsageError extends Error {
  override name = 'UsageError';
}

export type Command =
  | {
      kind: 'check';
      ref: ContainerRef;
      opts: ProbeOptions;
      target: TargetRoot;
      workDir?: string;
      json: boolean;
      verbose: boolean;
    }
  | {
      kind: 'restore-check';
      src: { imagesDir: string } | { archive: string };
      opts: ProbeOptions;
      target: TargetRoot;
      json: boolean;
      verbose: boolean;
    }
  | { kind: 'facts'; json: boolean }
  | { kind: 'version' }
  | { kind: 'help'; topic?: string };

export const USAGE = `migprobe: can this running container be live-migrated with CRIU, without migrating it?

Usage:
  migprobe check (--pid N | --container ID [--namespace NS] [--address SOCK]) [options]
      Preflight scan, dump check (criu dump --leave-running, no memory written) and restore check in a sandbox.
  migprobe restore-check (--images DIR | --archive FILE.tar[.gz]) [--target-root DIR] [options]
      Would this existing checkpoint restore here? Restores it stopped in a sandbox, never runs it.
  migprobe facts [--json]      This node's facts (kernel, CPU, memory, CRIU version and features).
  migprobe version             Print the migprobe version.
  migprobe --help              This text.

Options:
  --target-root DIR     root filesystem the target would use (default for check: the container's own root as
                        its mount namespace shows it, else its image; for restore-check: the image, from containerd)
  --namespace NS        containerd namespace (default k8s.io)
  --address SOCK        containerd socket (default /run/containerd/containerd.sock)
  --tcp-established     allow established TCP connections (CRIU --tcp-established)
  --file-locks          allow held file locks (CRIU --file-locks)
  --ext-unix-sk         allow unix sockets with a peer outside the container (CRIU --ext-unix-sk)
  --allow-uprobes       allow tasks with a uprobe attached; the probe does not migrate (CRIU --allow-uprobes)
  --tcp-close           carry established TCP connections closed; the peers see them end (CRIU --tcp-close)
  --skip-in-flight      drop connections a listener has not accepted yet (CRIU --skip-in-flight)
  --link-remap          link unlinked open files back into their folder for the dump (CRIU --link-remap)
  --ghost-limit BYTES   largest deleted-but-open file to carry (default ${DEFAULT_PROBE_OPTIONS.ghostLimitBytes}; K, M, G suffixes)
  --non-lazy-memory-limit BYTES  most memory CRIU dumps even in lazy mode (mlock'ed, shared, SysV shm, written
                        file mappings, archived tmpfs) the check may write to disk (default 64M; K, M, G suffixes)
  --freeze-budget MS    longest pause the workload may feel (default ${DEFAULT_PROBE_OPTIONS.freezeBudgetMs})
  --timeout SEC         bound on every CRIU call (default ${DEFAULT_PROBE_OPTIONS.timeoutMs / 1000})
  --work-dir DIR        where the probe keeps its images while it runs (check only)
  --json                print the verdict as JSON
  --verbose             also print the probe's evidence to stderr (restore proof, dump recovery, pagemap fix)

Exit status: 0 migratable, 1 not migratable, 2 usage or internal error.
Environment: MIGPROBE_CRIU names the criu binary (default: criu on PATH).
`;


const VALUE_FLAGS = new Set([
  '--pid', '--container', '--namespace', '--address', '--target-root', '--ghost-limit', '--freeze-budget',
  '--timeout', '--work-dir', '--images', '--archive', '--non-lazy-memory-limit',
]);
/** Boolean flags that allow CRIU something (ProbeOptions), accepted by check and restore-check alike. */
const OPTION_FLAGS = ['--tcp-established', '--file-locks', '--ext-unix-sk', '--allow-uprobes', '--tcp-close', '--skip-in-flight', '--link-remap'];
const BOOL_FLAGS = new Set([...OPTION_FLAGS, '--json', '--verbose', '--help', '-h']);
/** Every flag of the CLI (hints that name a CLI flag are checked against it: src/cli/hints.test.ts). */
export const CLI_FLAGS: ReadonlySet<string> = new Set([...VALUE_FLAGS, ...BOOL_FLAGS]);

/** Which flags each command accepts. */
const ALLOWED: Record<'check' | 'restore-check' | 'facts' | 'version', ReadonlySet<string>> = {
  check: new Set([
    '--pid', '--container', '--namespace', '--address', '--target-root', '--ghost-limit', '--freeze-budget',
    '--timeout', '--work-dir', ...OPTION_FLAGS, '--json', '--verbose',
    '--non-lazy-memory-limit',
  ]),
  'restore-check': new Set([
    '--images', '--archive', '--target-root', '--namespace', '--address', '--ghost-limit', '--freeze-budget',
    '--timeout', ...OPTION_FLAGS, '--json', '--verbose',
  ]),
  facts: new Set(['--json']),
  version: new Set([]),
};

function parseFlags(argv: readonly string[]): { values: Map<string, string>; bools: Set<string>; positional: string[] } {
  const values = new Map<string, string>();
  const bools = new Set<string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (!a.startsWith('-') || a === '-') {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (VALUE_FLAGS.has(name)) {
      let v: string | undefined;
      if (eq > 0) v = a.slice(eq + 1);
      else {
        v = argv[i + 1];
        i++;
      }
      if (v === undefined || v === '') throw new UsageError(`${name} needs a value`);
      if (values.has(name)) throw new UsageError(`${name} given twice`);
      values.set(name, v);
    } else if (BOOL_FLAGS.has(name)) {
      if (eq > 0) throw new UsageError(`${name} takes no value`);
      bools.add(name);
    } else {
      throw new UsageError(`unknown option ${name}`);
    }
  }
  return { values, bools, positional };
}

function positiveInt(name: string, v: string): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`${name} must be a positive integer, got '${v}'`);
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${name} must be a positive integer, got '${v}'`);
  return n;
}

/** "1048576", "512K", "5M", "1G" (binary units) -> bytes. */
export function parseBytes(name: string, v: string): number {
  const m = /^(\d+)([KMG]i?B?)?$/i.exec(v);
  if (m === null) throw new UsageError(`${name} must be a byte count like 1048576, 512K, 5M or 1G, got '${v}'`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? '').charAt(0).toLowerCase()] ?? 1;
  const n = Number(m[1]) * mult;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${name} is too large`);
  return n;
}

function probeOptions(values: Map<string, string>, bools: Set<string>): ProbeOptions {
  const opts: ProbeOptions = { ...DEFAULT_PROBE_OPTIONS };
  opts.tcpEstablished = bools.has('--tcp-established');
  opts.fileLocks = bools.has('--file-locks');
  opts.extUnixSockets = bools.has('--ext-unix-sk');
  if (bools.has('--allow-uprobes')) opts.allowUprobes = true;
  if (bools.has('--tcp-close')) opts.tcpClose = true;
  if (bools.has('--skip-in-flight')) opts.tcpSkipInFlight = true;
  if (bools.has('--link-remap')) opts.linkRemap = true;
  const ghost = values.get('--ghost-limit');
  if (ghost !== undefined) opts.ghostLimitBytes = parseBytes('--ghost-limit', ghost);
  const nonLazy = values.get('--non-lazy-memory-limit');
  if (nonLazy !== undefined) opts.nonLazyMemoryLimitBytes = parseBytes('--non-lazy-memory-limit', nonLazy);
  const freeze = values.get('--freeze-budget');
  if (freeze !== undefined) opts.freezeBudgetMs = positiveInt('--freeze-budget', freeze);
  const timeout = values.get('--timeout');
  if (timeout !== undefined) opts.timeoutMs = positiveInt('--timeout', timeout) * 1000;
  return opts;
}

function targetRoot(values: Map<string, string>): TargetRoot {
  const t: TargetRoot = {};
  const root = values.get('--target-root');
  if (root !== undefined) t.rootfs = root;
  const addr = values.get('--address');
  if (addr !== undefined) t.containerdAddress = addr;
  const ns = values.get('--namespace');
  if (ns !== undefined) t.namespace = ns;
  return t;
}

export function parseArgs(argv: readonly string[]): Command {
  if (argv.length === 0) throw new UsageError('no command given');
  const [cmd, ...rest] = argv;
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') return { kind: 'help' };
  if (cmd === '--version' || cmd === 'version') {
    if (cmd === 'version' && rest.length > 0) throw new UsageError('version takes no arguments');
    return { kind: 'version' };
  }
  if (cmd !== 'check' && cmd !== 'restore-check' && cmd !== 'facts') throw new UsageError(`unknown command '${cmd ?? ''}'`);
  const { values, bools, positional } = parseFlags(rest);
  if (bools.has('--help') || bools.has('-h')) return { kind: 'help', topic: cmd };
  if (positional.length > 0) throw new UsageError(`unexpected argument '${positional[0] ?? ''}'`);
  const allowed = ALLOWED[cmd];
  for (const f of [...values.keys(), ...bools]) {
    if (!allowed.has(f)) throw new UsageError(`${f} is not an option of ${cmd}`);
  }
  const json = bools.has('--json');
  const verbose = bools.has('--verbose');

  if (cmd === 'facts') return { kind: 'facts', json };

  const opts = probeOptions(values, bools);
  const target = targetRoot(values);

  if (cmd === 'check') {
    const pid = values.get('--pid');
    const id = values.get('--container');
    if ((pid === undefined) === (id === undefined)) throw new UsageError('check needs exactly one of --pid or --container');
    let ref: ContainerRef;
    if (pid !== undefined) {
      if (values.has('--namespace') || values.has('--address')) {
        throw new UsageError('--namespace and --address go with --container, not --pid');
      }
      ref = { pid: positiveInt('--pid', pid) };
    } else {
      const cid = id ?? '';
      if (!CONTAINER_ID_RE.test(cid)) throw new UsageError(`--container '${cid}' is not a valid container ID`);
      const r: { containerId: string; namespace?: string; containerdAddress?: string } = { containerId: cid };
      const ns = values.get('--namespace');
      if (ns !== undefined) r.namespace = ns;
      const addr = values.get('--address');
      if (addr !== undefined) r.containerdAddress = addr;
      ref = r;
    }
    const workDir = values.get('--work-dir');
    return { kind: 'check', ref, opts, target, json, verbose, ...(workDir === undefined ? {} : { workDir }) };
  }

  const images = values.get('--images');
  const archive = values.get('--archive');
  if ((images === undefined) === (archive === undefined)) {
    throw new UsageError('restore-check needs exactly one of --images or --archive');
  }
  if (archive !== undefined && !/\.tar(\.gz)?$|\.tgz$/.test(archive)) {
    throw new UsageError(`--archive must name a .tar or .tar.gz file, got '${archive}'`);
  }
  const src = images !== undefined ? { imagesDir: images } : { archive: archive ?? '' };
  return { kind: 'restore-check', src, opts, target, json, verbose };
}
