// Bench (not a test): migprobe's verdict against the truth on CRIU's own zdtm static test programs.
//
//   tini -s -- node bench/conformance.ts [--jobs N] [--only t1,t2] [--out DIR] [--update]
//
// For every test of test/zdtm/static (built by hack/zdtm.sh from the CRIU source provisioning downloaded) that
// can run here, one `zdtm.py run -t zdtm/static/<t> -f ns` (the test in its own PID, mount, network, IPC and UTS
// namespaces, as CRIU's CI runs it) with a criu shim (bench/zdtm/verdict-hook.ts): before zdtm's first real
// `criu dump --tree PID`, the shim takes migprobe's verdict on that same tree (`migprobe check --pid PID --json
// --target-root <the test's root>`); then the real dump, kill, restore and the test's own pass/fail check are the
// truth. A disagreement is run once more; the second run counts and the report says so. Output: docs/conformance.md
// and docs/conformance.json (with --only: into the run folder unless --out), rewritten after every test so an
// interrupted run leaves a partial report. --update re-runs only the --only tests into the report already in
// --out (default docs/), after an engine fix, and says so in the report; with no --only it re-renders the report
// (e.g. after bench/zdtm/known.ts changed). Run it under a reaper (tini -s): PID 1 of this VM reaps nothing.

import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorText, isNoise } from '../src/engine/criu-log.ts';
import { KNOWN } from './zdtm/known.ts';
import { clearZdtmHierarchies, hierarchies, homeProcs, makeTestCgroups, namedTestCgroups, removeTestCgroups } from './zdtm/cgroups.ts';
import { isPlan, matrixOf, outcomeOf, planTest, reportMarkdown } from './zdtm/plan.ts';
import type { Plan, ReportMeta, Row, RunRecord, ZdtmDesc } from './zdtm/plan.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SYSTEM_PATH = '/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin';
const TEST_TIMEOUT_MS = 900_000;
const PYTHON = '/usr/bin/python3';
/** The freeze budget is a policy, not a C/R capability: out of reach here, so a loaded machine decides nothing. */
const FREEZE_BUDGET = '600000';

interface Args {
  jobs: number;
  update?: boolean;
  only?: string[];
  out?: string;
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = { jobs: 1 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === '--jobs' && v !== undefined) {
      a.jobs = Math.max(1, Number(v));
      i++;
    } else if (k === '--only' && v !== undefined) {
      a.only = v.split(',').filter((t) => t !== '');
      i++;
    } else if (k === '--out' && v !== undefined) {
      a.out = v;
      i++;
    } else if (k === '--update') a.update = true;
    else throw new Error(`unknown argument ${k ?? ''}: use --jobs N, --only t1,t2, --out DIR, --update`);
  }
  return a;
}

function log(msg: string): void {
  process.stderr.write(`[conformance ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/** The tests of the static Makefile (TST, as make expands it here), and every test that has a .desc. */
function testNames(staticDir: string): { all: string[]; listed: Set<string> } {
  const out = execFileSync('make', ['-s', '--no-print-directory', '-C', staticDir, '--eval', 'migprobe-list: ; @echo $(TST)', 'migprobe-list'], {
    encoding: 'utf8',
  });
  const listed = new Set(out.split(/\s+/).filter((t) => t !== ''));
  const described = readdirSync(staticDir).filter((f) => f.endsWith('.desc')).map((f) => f.slice(0, -'.desc'.length));
  return { all: [...new Set([...listed, ...described])].sort(), listed };
}

/** Every .desc, read as zdtm.py reads it (eval of a Python expression: CRIU's own files), through Debian's python. */
function readDescs(staticDir: string, tests: readonly string[]): Record<string, ZdtmDesc> {
  const script =
    'import json, os, sys\nd = {}\nfor t in sys.argv[2:]:\n    p = os.path.join(sys.argv[1], t + ".desc")\n' +
    '    if os.path.exists(p) and os.path.getsize(p) > 0:\n        d[t] = eval(open(p).read(), {"os": os})\nprint(json.dumps(d))\n';
  const raw = JSON.parse(execFileSync(PYTHON, ['-c', script, staticDir, ...tests], { encoding: 'utf8', maxBuffer: 1 << 24 })) as Record<string, Record<string, unknown>>;
  const out: Record<string, ZdtmDesc> = {};
  for (const [t, d] of Object.entries(raw)) {
    const s = (k: string): string | undefined => {
      const v = d[k];
      return typeof v === 'string' ? v : undefined;
    };
    const desc: ZdtmDesc = {};
    for (const k of ['flavor', 'flags', 'opts', 'dopts', 'ropts', 'feature', 'arch'] as const) {
      const v = s(k);
      if (v !== undefined) desc[k] = v;
    }
    out[t] = desc;
  }
  return out;
}

function hasCapSysResource(): boolean {
  const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m !== null && (BigInt(`0x${m[1] ?? '0'}`) & (1n << 24n)) !== 0n;
}

function readOr(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function rcs(path: string): number[] {
  return (readOr(path) ?? '').split('\n').filter((l) => l.trim() !== '').map(Number);
}

/** Error lines of every CRIU log zdtm kept for a test (it keeps the images of a failed run). */
function criuErrors(dumpDir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names.sort()) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (/^(dump|restore)\.log$/.test(n)) {
        for (const line of (readOr(p) ?? '').split('\n')) {
          const t = errorText(line);
          if (t !== undefined && t !== '' && !isNoise(t) && !out.includes(`${n.replace('.log', '')}: ${t}`)) out.push(`${n.replace('.log', '')}: ${t}`);
        }
      }
    }
  };
  walk(dumpDir);
  return out.slice(0, 20);
}

function shim(runDir: string, criu: string): string {
  for (const p of [criu, process.execPath, ROOT, runDir]) {
    if (/['\n]/.test(p)) throw new Error(`path ${p} cannot go into the criu shim`);
  }
  const hook = join(ROOT, 'bench/zdtm/verdict-hook.ts');
  const path = join(runDir, 'criu-shim');
  // The shim only forwards: every argument stays an argument ("$@"), and the paths are this run's own.
  writeFileSync(
    path,
    [
      '#!/bin/sh',
      '# Generated by bench/conformance.ts: migprobe check before the first dump, then the real criu; exit codes recorded.',
      'st="$MIGPROBE_ZDTM_STATE"',
      'case "$1" in',
      'dump)',
      `  [ -e "$st/verdict.rc" ] || '${process.execPath}' '${hook}' "$@" </dev/null >"$st/hook.out" 2>&1`,
      `  '${criu}' "$@"; rc=$?; echo "$rc" >>"$st/dump.rc"; exit "$rc" ;;`,
      'restore)',
      `  '${criu}' "$@"; rc=$?; echo "$rc" >>"$st/restore.rc"; exit "$rc" ;;`,
      `*) exec '${criu}' "$@" ;;`,
      'esac',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  return path;
}

interface Ctx {
  testDir: string;
  shimPath: string;
  runDir: string;
  asRoot: boolean;
  cgroups: ReturnType<typeof hierarchies>;
  jobs: number;
}

function runOne(plan: Plan, ctx: Ctx, attempt: number): Promise<RunRecord & { ms: number }> {
  const state = join(ctx.runDir, 'state', `${plan.test}.${attempt}`);
  rmSync(state, { recursive: true, force: true });
  mkdirSync(state, { recursive: true });
  writeFileSync(
    join(state, 'check.json'),
    JSON.stringify({ args: ['--target-root', ctx.testDir, '--timeout', '60', '--freeze-budget', FREEZE_BUDGET, ...plan.migprobeArgs], home: homeProcs(ctx.cgroups) }),
  );
  const procs = makeTestCgroups(ctx.cgroups, plan.test);
  // zdtm's named hierarchies hold the other tests' cgroups while several run at once: only one test at a time
  const named = ctx.jobs === 1 ? namedTestCgroups(state, plan.test) : undefined;
  const dumpDir = join(ctx.testDir, 'dump', 'zdtm', 'static', plan.test);
  rmSync(dumpDir, { recursive: true, force: true });
  const started = performance.now();
  return new Promise((resolve) => {
    // zdtm.py waits on its stdin until it sits in the test's cgroups (a constant script; the rest are arguments).
    const child = spawn(
      '/bin/sh',
      ['-c', 'read _ && exec "$@"', 'sh', PYTHON, 'zdtm.py', 'run', '-t', `zdtm/static/${plan.test}`, '-f', plan.flavor, '--criu-bin', ctx.shimPath, '--ignore-taint'],
      {
        cwd: ctx.testDir,
        detached: true,
        stdio: ['pipe', 'pipe', 'pipe'],
        env: {
          ...process.env,
          PATH: `${dirname(process.execPath)}:${SYSTEM_PATH}`,
          MIGPROBE_ZDTM_STATE: state,
          MIGPROBE_ZDTM_CRIU_TIMEOUT: '400',
          ...(ctx.asRoot ? { MIGPROBE_ZDTM_ROOT: '1' } : {}),
        },
      },
    );
    for (const p of procs) writeFileSync(p, String(child.pid));
    named?.place(child.pid ?? 0);
    child.stdin.end('go\n');
    let output = '';
    const keep = (b: Buffer): void => {
      output = (output + b.toString('utf8')).slice(-200_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-(child.pid ?? 0), 'SIGINT');
      } catch {
        // gone
      }
      setTimeout(() => {
        try {
          process.kill(-(child.pid ?? 0), 'SIGKILL');
        } catch {
          // gone
        }
      }, 15_000).unref();
    }, TEST_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      writeFileSync(join(state, 'zdtm.out'), output);
      const errors = criuErrors(dumpDir);
      rmSync(dumpDir, { recursive: true, force: true });
      const left = removeTestCgroups(ctx.cgroups, plan.test);
      if (left.length > 0) log(`${plan.test}: cgroups left behind (tasks still in them): ${left.join(' ')}`);
      // Every task of the node sits at the root of zdtm's named hierarchies, so every CRIU dump on the node (ours,
      // and any other migprobe's) carries all cgroups found there, and its restore check copies them one level
      // deeper: empty them after each test, or they grow with every probe.
      if (ctx.jobs === 1) clearZdtmHierarchies(ctx.runDir);
      const verdictRc = readOr(join(state, 'verdict.rc'));
      const verdictJson = readOr(join(state, 'verdict.json'));
      const verdictStderr = readOr(join(state, 'verdict.stderr'));
      const ms = Number(readOr(join(state, 'verdict.ms')) ?? 'NaN');
      resolve({
        zdtmRc: code,
        zdtmTail: output.slice(-6000),
        timedOut,
        dumpRcs: rcs(join(state, 'dump.rc')),
        restoreRcs: rcs(join(state, 'restore.rc')),
        ...(verdictRc === undefined ? {} : { verdictRc }),
        ...(verdictJson === undefined ? {} : { verdictJson }),
        ...(verdictStderr === undefined ? {} : { verdictStderr }),
        ...(Number.isFinite(ms) ? { verdictMs: ms } : {}),
        criuErrors: errors,
        ms: Math.round(performance.now() - started),
      });
    });
  });
}

function rowOf(plan: Plan, r: RunRecord & { ms: number }): Row {
  const outcome = outcomeOf(plan, r);
  const row: Row = {
    test: plan.test,
    flavor: plan.flavor,
    flags: plan.flags,
    criuOpts: plan.criuOpts,
    migprobeArgs: plan.migprobeArgs,
    unmatched: plan.unmatched,
    outcome,
    criuErrors: r.criuErrors,
    ms: r.ms,
  };
  const k = KNOWN[plan.test];
  if (k !== undefined) row.known = k;
  return row;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  const zdtm = execFileSync('bash', [join(ROOT, 'hack/zdtm.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').pop() ?? '';
  const testDir = join(zdtm, 'test');
  const staticDir = join(testDir, 'zdtm', 'static');
  const criu = process.env['MIGPROBE_CRIU'] ?? 'criu';
  const criuVersion = execFileSync(criu, ['--version'], { encoding: 'utf8' }).match(/Version: *(\S+)/)?.[1] ?? '?';
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const runDir = join(dirname(zdtm), `run-${stamp}`);
  mkdirSync(runDir, { recursive: true });
  const asRoot = !hasCapSysResource();
  log(`zdtm's cgroup hierarchies from an earlier run: ${clearZdtmHierarchies(runDir).join('; ') || 'none left'}`);
  const ctx: Ctx = { testDir, shimPath: shim(runDir, criu), runDir, asRoot, cgroups: hierarchies(), jobs: args.jobs };
  const { all, listed } = testNames(staticDir);
  let names = args.update === true ? [] : all;
  if (args.only !== undefined) {
    const unknown = args.only.filter((t) => !all.includes(t));
    if (unknown.length > 0) throw new Error(`no such zdtm static test: ${unknown.join(', ')}`);
    names = args.only;
  }
  const descs = readDescs(staticDir, names);
  const outDir = args.out ?? (args.only === undefined || args.update === true ? join(ROOT, 'docs') : runDir);
  mkdirSync(outDir, { recursive: true });
  const base =
    args.update === true
      ? (JSON.parse(readFileSync(join(outDir, 'conformance.json'), 'utf8')) as { meta: ReportMeta; rows: Row[] })
      : undefined;
  const rows = new Map<string, Row>();
  const plans: Plan[] = [];
  for (const t of names) {
    const exe = join(staticDir, t);
    const built = existsSync(exe) && (statSync(exe).mode & 0o100) !== 0;
    const p = planTest(t, descs[t] ?? {}, built, listed.has(t));
    if (isPlan(p)) plans.push(p);
    else rows.set(t, { test: t, outcome: { kind: 'not-runnable', why: p.why } });
  }
  log(`${names.length} tests, ${plans.length} to run, ${args.jobs} at a time; run folder ${runDir}`);
  const notes = [
    `Every test runs in zdtm's \`ns\` flavor (its own PID, mount, network, IPC and UTS namespaces; \`uns\` adds a user namespace where a test allows only that), so that migprobe sees a container; the restore check's root is the test's root (\`--target-root\` ${'`<criu>/test`'}).`,
    'The freeze budget is set out of reach (`--freeze-budget 600000`): it is a policy on the pause, not a C/R capability, and on a loaded machine it would decide verdicts.',
    'When a test\'s .desc gives CRIU options that migprobe has a flag for (--file-locks, --tcp-established, --ext-unix-sk, --ghost-limit, --tcp-close, --skip-in-flight, --link-remap), migprobe gets that flag too; options it has none for are listed per test.',
    ...(asRoot
      ? ['This machine\'s root has no CAP_SYS_RESOURCE (bounding set), so no CRIU here can read the rlimits of a task of another uid: every test runs as root (as zdtm runs its `suid` tests) instead of dropping to uid 18943. migprobe names that case with reason InsufficientPrivileges.']
      : []),
  ];
  const write = (partial?: string): void => {
    if (base !== undefined) {
      const merged = base.rows.map((r): Row => {
        const { known: _old, ...row } = rows.get(r.test) ?? r;
        const k = KNOWN[row.test];
        return k === undefined ? row : { ...row, known: k };
      });
      const again = names.length === 0 ? [] : [`Re-run after engine fixes on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (their rows come from that run): ${names.join(', ')}.`];
      const meta: ReportMeta = { ...base.meta, notes: [...base.meta.notes, ...again], ...(partial === undefined ? {} : { partial }) };
      if (partial === undefined && base.meta.partial !== undefined) delete meta.partial;
      writeFileSync(join(outDir, 'conformance.json'), JSON.stringify({ meta, matrix: matrixOf(merged), rows: merged }, null, 1) + '\n');
      writeFileSync(join(outDir, 'conformance.md'), reportMarkdown(meta, merged));
      return;
    }
    const ordered = names.map((t) => rows.get(t)).filter((r): r is Row => r !== undefined);
    const meta: ReportMeta = {
      date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
      host: hostname(),
      kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
      criu: criuVersion,
      command: `node bench/conformance.ts --jobs ${args.jobs}${args.only === undefined ? '' : ` --only ${args.only.join(',')}`}`,
      jobs: args.jobs,
      wallSeconds: (performance.now() - t0) / 1000,
      notes,
      ...(partial === undefined ? {} : { partial }),
    };
    writeFileSync(join(outDir, 'conformance.json'), JSON.stringify({ meta, matrix: matrixOf(ordered), rows: ordered }, null, 1) + '\n');
    writeFileSync(join(outDir, 'conformance.md'), reportMarkdown(meta, ordered));
  };
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const plan = plans[next++];
      if (plan === undefined) return;
      let row = rowOf(plan, await runOne(plan, ctx, 1));
      const first = row.outcome.kind === 'compared' ? row.outcome.cls : undefined;
      if (first === 'FP' || first === 'FN') {
        const again = rowOf(plan, await runOne(plan, ctx, 2));
        if (again.outcome.kind === 'compared' && again.outcome.cls !== first) again.firstRun = first;
        row = again;
      }
      rows.set(plan.test, row);
      done++;
      const o = row.outcome;
      log(`${done}/${plans.length} ${plan.test}: ${o.kind === 'compared' ? `${o.cls} (${o.verdict.codes.join(',') || 'migratable'}; truth ${o.truth.migratable ? 'works' : `fails at ${o.truth.failedAt}`})` : `not runnable: ${o.why}`}`);
      write(`${done} of ${plans.length} tests run so far`);
    }
  };
  await Promise.all(Array.from({ length: args.jobs }, () => worker()));
  write();
  // zdtm's named cgroup hierarchies hold every task of the node at their root: left, every CRIU dump on the node
  // walks them.
  log(`zdtm's cgroup hierarchies: ${clearZdtmHierarchies(runDir).join('; ') || 'removed'}`);
  const m = matrixOf([...rows.values()]);
  log(`done in ${Math.round((performance.now() - t0) / 1000)} s: TP ${m.TP} TN ${m.TN} FP ${m.FP} FN ${m.FN}; report ${join(outDir, 'conformance.md')}`);
}

await main();
