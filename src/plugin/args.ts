// `kubectl migprobe` argument parsing. Pure: argv in, a typed command out, or a UsageError naming a real flag.
// kubectl's conventions: global flags anywhere on the line (-n/--namespace, --context, --kubeconfig,
// -o/--output), `--flag=value` or `--flag value`, -h/--help on every command, durations like 30s, 5m, 1h.

import type { LabelSelector, LabelSelectorRequirement } from '../api/readiness.ts';
import { goDurationMs } from '../kube/duration.ts';

export class UsageError extends Error {
  override name = 'UsageError';
  /** The command whose --help the message points to (none: the top-level help). */
  readonly command: CommandName | undefined;
  constructor(message: string, command?: CommandName) {
    super(message);
    this.command = command;
  }
}

export type OutputFormat = 'json' | 'yaml' | 'wide';
export type CommandName = 'check' | 'drain-check' | 'nodes';

export interface GlobalFlags {
  namespace?: string;
  context?: string;
  kubeconfig?: string;
  output?: OutputFormat;
}

export type PluginCommand =
  | {
      kind: 'check';
      pod: string;
      targetNode: string;
      container?: string;
      wait: boolean;
      timeoutMs: number;
      mode: 'Check' | 'RestoreOnly';
      checkpoint?: string;
    }
  | {
      kind: 'drain-check';
      node: string;
      name: string;
      /** Candidate targets; none: the readiness's default (every other node with an agent). */
      targets?: { nodeSelector: LabelSelector } | { nodeNames: string[] };
      timeoutMs: number;
    }
  | { kind: 'nodes' }
  | { kind: 'help'; topic?: CommandName }
  | { kind: 'version' };

export interface Parsed {
  globals: GlobalFlags;
  command: PluginCommand;
}

const GLOBAL_HELP = `Global flags (kubectl's):
  -n, --namespace NS     namespace of the pod and its probes (default: the kubeconfig context's, else default)
      --context NAME     kubeconfig context to use
      --kubeconfig FILE  kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)
  -o, --output FORMAT    json or yaml (print the objects), wide (more columns)
  -h, --help             help for a command
`;

export const HELP: Record<CommandName | 'top', string> = {
  top: `kubectl migprobe: can these pods be live-migrated with CRIU, and where to? (needs the migprobe chart installed)

Usage:
  kubectl migprobe check POD --to NODE [-c CONTAINER] [--wait] [--timeout 5m]
      Create a MigrationProbe for POD's container and NODE; with --wait, print its verdict.
  kubectl migprobe drain-check NODE [--to SELECTOR | --to-nodes a,b] [--name NAME] [--timeout 10m]
      Create (or re-run) the MigrationReadiness of NODE: can every pod on it move, and where to?
  kubectl migprobe nodes
      Every MigrationNode and the node x node compatibility matrix.
  kubectl migprobe version

${GLOBAL_HELP}
Exit status: 0 migratable / drainable, 1 not, 2 usage, API or timeout error.
`,
  check: `kubectl migprobe check POD --to NODE [flags]

Creates a MigrationProbe (generateName POD-to-NODE-) in the namespace: could POD's container be live-migrated
to NODE? Without --wait it prints the probe's name; with --wait it waits for the verdict and prints it as
\`migprobe check\` does.

Flags:
      --to NODE          target node (required)
  -c, --container NAME   container of the pod (default: its first)
      --wait             wait for the verdict and print it; exit 0 migratable, 1 not, 2 probe failed or timeout
      --timeout DURATION how long --wait waits (default 5m; 30s, 5m, 1h)
      --mode MODE        Check (default) or RestoreOnly (checks an existing checkpoint; needs --checkpoint)
      --checkpoint PATH  for --mode RestoreOnly: the checkpoint on the pod's node (a CRIU image folder or archive)

${GLOBAL_HELP}`,
  'drain-check': `kubectl migprobe drain-check NODE [flags]

Can NODE be drained by live migration? Creates the MigrationReadiness drain-NODE (or, when it exists, asks it
to run again), waits for the run with a progress line on stderr, and prints a row per pod: its owner, whether
it can move, the best target and every compatible one, the reason codes otherwise; then the targets ruled out
before any dump and the Drainable summary. Exit 0 drainable, 1 not, 2 error or timeout.

Flags:
      --to SELECTOR      candidate targets by node label selector (app=x,tier!=db,zone in (a,b),!spot)
      --to-nodes A,B     candidate targets by name (default: every other node with a migprobe agent)
      --name NAME        the MigrationReadiness's name (default drain-NODE)
      --timeout DURATION how long to wait for the run (default 10m)

${GLOBAL_HELP}`,
  nodes: `kubectl migprobe nodes

Lists the MigrationNodes (each node's facts as its agent published them, with spec.factsOverride laid over)
and the node x node compatibility matrix: rows are sources, columns targets, \`ok\` or the reason codes that
rule the pair out before any dump; then every incompatible pair's reasons.

${GLOBAL_HELP}`,
};

const COMMANDS: readonly CommandName[] = ['check', 'drain-check', 'nodes'];

interface FlagSpec {
  /** Names, long first: --namespace, -n */
  names: readonly string[];
  takesValue: boolean;
  /** The commands that accept it; none: every command (a global flag). */
  commands?: readonly CommandName[];
}

const FLAGS: readonly FlagSpec[] = [
  { names: ['--namespace', '-n'], takesValue: true },
  { names: ['--context'], takesValue: true },
  { names: ['--kubeconfig'], takesValue: true },
  { names: ['--output', '-o'], takesValue: true },
  { names: ['--help', '-h'], takesValue: false },
  { names: ['--to'], takesValue: true, commands: ['check', 'drain-check'] },
  { names: ['--container', '-c'], takesValue: true, commands: ['check'] },
  { names: ['--wait'], takesValue: false, commands: ['check'] },
  { names: ['--timeout'], takesValue: true, commands: ['check', 'drain-check'] },
  { names: ['--mode'], takesValue: true, commands: ['check'] },
  { names: ['--checkpoint'], takesValue: true, commands: ['check'] },
  { names: ['--to-nodes'], takesValue: true, commands: ['drain-check'] },
  { names: ['--name'], takesValue: true, commands: ['drain-check'] },
];

/** Every flag of the plugin (a hint naming a flag is checked against this set in the tests). */
export const PLUGIN_FLAGS: ReadonlySet<string> = new Set(FLAGS.flatMap((f) => f.names));

function specOf(name: string): FlagSpec | undefined {
  return FLAGS.find((f) => f.names.includes(name));
}

interface Tokens {
  /** By long name. */
  values: Map<string, string>;
  bools: Set<string>;
  positional: string[];
}

function tokenize(argv: readonly string[]): Tokens {
  const t: Tokens = { values: new Map(), bools: new Set(), positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--') {
      t.positional.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      t.positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    let name = eq > 0 ? a.slice(0, eq) : a;
    let inline = eq > 0 ? a.slice(eq + 1) : undefined;
    // pflag's -nNS: a short flag glued to its value.
    if (!a.startsWith('--') && eq < 0 && a.length > 2 && specOf(a.slice(0, 2))?.takesValue === true) {
      name = a.slice(0, 2);
      inline = a.slice(2);
    }
    const spec = specOf(name);
    if (spec === undefined) throw new UsageError(`unknown flag ${name}`);
    const long = spec.names[0] ?? name;
    if (!spec.takesValue) {
      if (inline !== undefined && inline !== 'true') throw new UsageError(`${long} takes no value`);
      t.bools.add(long);
      continue;
    }
    const v = inline ?? argv[++i];
    if (v === undefined || v === '') throw new UsageError(`${long} needs a value`);
    if (t.values.has(long)) throw new UsageError(`${long} given twice`);
    t.values.set(long, v);
  }
  return t;
}

/** A Go-style duration as kubectl takes it (30s, 5m, 1h30m, 1.5h). Milliseconds; throws UsageError. */
export function parseDuration(flag: string, s: string, command?: CommandName): number {
  const ms = goDurationMs(s);
  if (ms === undefined || ms <= 0) {
    throw new UsageError(`${flag} ${s}: give a positive duration with a unit, for example ${flag} 30s, ${flag} 5m or ${flag} 1h`, command);
  }
  return ms;
}

const SELECTOR_KEY = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$/;

/** Splits a selector at commas outside parentheses. */
function selectorTerms(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  out.push(cur.trim());
  return out;
}

/**
 * A label selector in kubectl's syntax (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`) as a
 * metav1.LabelSelector (`a!=b` becomes NotIn [b]). Throws UsageError naming `flag`.
 */
export function parseLabelSelector(flag: string, s: string, command?: CommandName): LabelSelector {
  const matchLabels: Record<string, string> = {};
  const matchExpressions: LabelSelectorRequirement[] = [];
  const bad = (term: string, why: string): UsageError =>
    new UsageError(`${flag} ${JSON.stringify(s)}: ${JSON.stringify(term)} ${why}; write it as kubectl does, for example ${flag} 'pool=general,zone in (a,b),!spot'`, command);
  const key = (k: string, term: string): string => {
    if (!SELECTOR_KEY.test(k)) throw bad(term, `has no valid label key`);
    return k;
  };
  for (const term of selectorTerms(s)) {
    if (term === '') throw bad(term, 'is empty');
    let m = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(term);
    if (m) {
      const values = (m[3] ?? '').split(',').map((v) => v.trim()).filter((v) => v !== '');
      if (values.length === 0) throw bad(term, 'lists no value');
      matchExpressions.push({ key: key(m[1] ?? '', term), operator: m[2] === 'in' ? 'In' : 'NotIn', values });
      continue;
    }
    m = /^([^=!\s]+)\s*(==|=|!=)\s*([^=!\s]*)$/.exec(term);
    if (m) {
      const k = key(m[1] ?? '', term);
      if (m[2] === '!=') matchExpressions.push({ key: k, operator: 'NotIn', values: [m[3] ?? ''] });
      else matchLabels[k] = m[3] ?? '';
      continue;
    }
    m = /^(!?)\s*([^=!\s()]+)$/.exec(term);
    if (m) {
      matchExpressions.push({ key: key(m[2] ?? '', term), operator: m[1] === '!' ? 'DoesNotExist' : 'Exists' });
      continue;
    }
    throw bad(term, 'is not a selector term');
  }
  const out: LabelSelector = {};
  if (Object.keys(matchLabels).length > 0) out.matchLabels = matchLabels;
  if (matchExpressions.length > 0) out.matchExpressions = matchExpressions;
  return out;
}

function oneName(positional: readonly string[], what: string, command: CommandName): string {
  if (positional.length === 0) throw new UsageError(`${command} needs ${what}`, command);
  if (positional.length > 1) throw new UsageError(`${command} takes one ${what}, got ${positional.join(' ')}`, command);
  return positional[0] ?? '';
}

export function parsePluginArgs(argv: readonly string[]): Parsed {
  const t = tokenize(argv);
  const [first, ...rest] = t.positional;
  const globals: GlobalFlags = {};
  for (const [flag, key] of [['--namespace', 'namespace'], ['--context', 'context'], ['--kubeconfig', 'kubeconfig']] as const) {
    const v = t.values.get(flag);
    if (v !== undefined) globals[key] = v;
  }
  const out = t.values.get('--output');
  if (out !== undefined) {
    if (out !== 'json' && out !== 'yaml' && out !== 'wide') {
      throw new UsageError(`--output ${out} is not supported: use -o json, -o yaml or -o wide`);
    }
    globals.output = out;
  }
  if (first === 'version' && rest.length === 0) return { globals, command: { kind: 'version' } };
  if (first === 'help') return { globals, command: { kind: 'help', ...(COMMANDS.includes(rest[0] as CommandName) ? { topic: rest[0] as CommandName } : {}) } };
  if (first === undefined) {
    if (t.bools.has('--help')) return { globals, command: { kind: 'help' } };
    throw new UsageError('no command given: use check, drain-check or nodes');
  }
  if (!COMMANDS.includes(first as CommandName)) throw new UsageError(`unknown command ${JSON.stringify(first)}: use check, drain-check or nodes`);
  const command = first as CommandName;
  if (t.bools.has('--help')) return { globals, command: { kind: 'help', topic: command } };
  for (const name of [...t.values.keys(), ...t.bools]) {
    const allowed = specOf(name)?.commands;
    if (allowed !== undefined && !allowed.includes(command)) throw new UsageError(`${name} is not a flag of ${command}`, command);
  }
  switch (command) {
    case 'check': {
      const pod = oneName(rest, 'a POD name', command);
      const to = t.values.get('--to');
      if (to === undefined) throw new UsageError('check needs the target node: --to NODE', command);
      const mode = t.values.get('--mode') ?? 'Check';
      if (mode !== 'Check' && mode !== 'RestoreOnly') throw new UsageError(`--mode ${mode}: use --mode Check or --mode RestoreOnly`, command);
      const checkpoint = t.values.get('--checkpoint');
      if (mode === 'RestoreOnly' && checkpoint === undefined) throw new UsageError('--mode RestoreOnly needs --checkpoint PATH (the checkpoint on the pod\'s node)', command);
      if (mode === 'Check' && checkpoint !== undefined) throw new UsageError('--checkpoint goes with --mode RestoreOnly', command);
      const container = t.values.get('--container');
      return {
        globals,
        command: {
          kind: 'check',
          pod,
          targetNode: to,
          wait: t.bools.has('--wait'),
          timeoutMs: parseDuration('--timeout', t.values.get('--timeout') ?? '5m', command),
          mode,
          ...(container === undefined ? {} : { container }),
          ...(checkpoint === undefined ? {} : { checkpoint }),
        },
      };
    }
    case 'drain-check': {
      const node = oneName(rest, 'a NODE name', command);
      const to = t.values.get('--to');
      const toNodes = t.values.get('--to-nodes');
      if (to !== undefined && toNodes !== undefined) throw new UsageError('give the targets either by --to SELECTOR or by --to-nodes A,B, not both', command);
      let targets: { nodeSelector: LabelSelector } | { nodeNames: string[] } | undefined;
      if (to !== undefined) targets = { nodeSelector: parseLabelSelector('--to', to, command) };
      if (toNodes !== undefined) {
        const nodeNames = toNodes.split(',').map((x) => x.trim()).filter((x) => x !== '');
        if (nodeNames.length === 0) throw new UsageError('--to-nodes names no node: --to-nodes node-b,node-c', command);
        targets = { nodeNames };
      }
      return {
        globals,
        command: {
          kind: 'drain-check',
          node,
          name: t.values.get('--name') ?? `drain-${node}`,
          timeoutMs: parseDuration('--timeout', t.values.get('--timeout') ?? '10m', command),
          ...(targets === undefined ? {} : { targets }),
        },
      };
    }
    case 'nodes':
      if (rest.length > 0) throw new UsageError(`nodes takes no argument, got ${rest.join(' ')}`, command);
      return { globals, command: { kind: 'nodes' } };
  }
}
