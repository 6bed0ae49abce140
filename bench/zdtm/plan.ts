// Pure parts of the conformance bench (bench/conformance.ts): which zdtm tests can run here and how, which
// migprobe flags match the CRIU options a test's .desc gives, what the truth of a run is, how a verdict and a
// truth compare, and the report (Markdown and JSON). No I/O.

/** A zdtm test's .desc, as zdtm.py reads it (a Python dict literal); absent keys are absent. */
export interface ZdtmDesc {
  flavor?: string;
  flags?: string;
  opts?: string;
  dopts?: string;
  ropts?: string;
  feature?: string;
  arch?: string;
}

export interface Plan {
  test: string;
  flavor: 'ns' | 'uns';
  flags: string[];
  /** CRIU options zdtm passes on dump and restore (opts, dopts, ropts). */
  criuOpts: string[];
  /** The migprobe flags that ask for the same (e.g. --file-locks). */
  migprobeArgs: string[];
  /** CRIU options migprobe has no flag for: the truth ran with them, migprobe without. */
  unmatched: string[];
}

export interface NotRunnable {
  test: string;
  why: string;
}

/** zdtm's own default when a .desc has no flavor. */
const DEFAULT_FLAVORS = 'h ns uns';

/** CRIU options that migprobe passes when asked, with the flag that asks (a value follows --ghost-limit). */
const MATCHED: Readonly<Record<string, string>> = {
  '--file-locks': '--file-locks',
  '--tcp-established': '--tcp-established',
  '--ext-unix-sk': '--ext-unix-sk',
  '--ghost-limit': '--ghost-limit',
  '--tcp-close': '--tcp-close',
  '--skip-in-flight': '--skip-in-flight',
  '--link-remap': '--link-remap',
};

function words(s: string | undefined): string[] {
  return (s ?? '').split(/\s+/).filter((w) => w !== '');
}

/** Why the static Makefile leaves a test that has a .desc out of its list on this machine. */
const LEFT_OUT: Readonly<Record<string, string>> = {
  uprobes: 'not built: the Makefile builds it only with libtracefs >= 1.7 (Debian 12 has 1.6.4)',
  bpf_array: 'not built: the Makefile builds it only with libbpf, and this CRIU is built without libbpf (no BPF map dumping)',
  bpf_hash: 'not built: the Makefile builds it only with libbpf, and this CRIU is built without libbpf (no BPF map dumping)',
  s390x_regs_check: 'not built: s390x only',
};

/**
 * How to run one test here, or why it cannot run. `inList`: the static Makefile lists it here (TST); `built`:
 * its program exists.
 */
export function planTest(test: string, desc: ZdtmDesc, built: boolean, inList = true): Plan | NotRunnable {
  const flags = words(desc.flags);
  if (!inList) return { test, why: LEFT_OUT[test] ?? 'not built: the static Makefile leaves it out on this machine' };
  if (!built) return { test, why: 'its program did not build here (see migprobe-static.log)' };
  if (flags.includes('noauto')) return { test, why: 'noauto: CRIU\'s own suite runs it only by hand, with setup zdtm.py does not do' };
  if (desc.arch !== undefined && !words(desc.arch).includes('x86_64')) return { test, why: `arch ${desc.arch} only` };
  const flavors = words(desc.flavor ?? DEFAULT_FLAVORS);
  const flavor = flavors.includes('ns') ? 'ns' : flavors.includes('uns') ? 'uns' : undefined;
  if (flavor === undefined) {
    return {
      test,
      why: `host flavor only (flavor '${desc.flavor ?? ''}'): the test must share the host's PID and mount namespaces, which migprobe refuses as "not in a container"`,
    };
  }
  const criuOpts = [...words(desc.opts), ...words(desc.dopts), ...words(desc.ropts)];
  const migprobeArgs: string[] = [];
  const unmatched: string[] = [];
  for (let i = 0; i < criuOpts.length; i++) {
    const o = criuOpts[i] ?? '';
    const [name, inlineValue] = o.split('=', 2) as [string, string | undefined];
    const flag = MATCHED[name];
    if (flag === undefined) {
      // an option's value (e.g. the path after --external) is no option of its own
      if (o.startsWith('-')) unmatched.push(o);
      else if (unmatched.length > 0) unmatched[unmatched.length - 1] += ` ${o}`;
      continue;
    }
    if (migprobeArgs.includes(flag)) continue;
    if (flag === '--ghost-limit') {
      const v = inlineValue ?? criuOpts[++i];
      if (v !== undefined) migprobeArgs.push(flag, v);
    } else migprobeArgs.push(flag);
  }
  return { test, flavor, flags, criuOpts, migprobeArgs, unmatched: [...new Set(unmatched)] };
}

export function isPlan(p: Plan | NotRunnable): p is Plan {
  return 'flavor' in p;
}

/** What one zdtm.py run left behind (see bench/zdtm/verdict-hook.ts and the criu shim). */
export interface RunRecord {
  zdtmRc: number | null;
  zdtmTail: string;
  timedOut: boolean;
  /** Exit codes of every real `criu dump` / `criu restore` zdtm ran. */
  dumpRcs: number[];
  restoreRcs: number[];
  /** migprobe: the exit code (0, 1, 2) and its JSON verdict. */
  verdictRc?: string;
  verdictJson?: string;
  verdictStderr?: string;
  verdictMs?: number;
  /** Error lines of CRIU's logs from the truth's dump and restore. */
  criuErrors: string[];
}

export interface Truth {
  migratable: boolean;
  /** Where the real C/R failed: dump, restore, check (the test's own pass/fail), or '' when it passed. */
  failedAt: '' | 'dump' | 'restore' | 'check';
}

export interface VerdictSummary {
  migratable: boolean;
  codes: string[];
  messages: string[];
}

export type Outcome =
  | { kind: 'compared'; truth: Truth; verdict: VerdictSummary; cls: Cls }
  | { kind: 'not-runnable'; why: string };

/** TP: says migratable, C/R works. TN: says no, C/R fails. FP: false "migratable". FN: false "not migratable". */
export type Cls = 'TP' | 'TN' | 'FP' | 'FN';

function lastLines(s: string, n: number): string {
  return s.trim().split('\n').slice(-n).join(' | ').slice(0, 400);
}

/** The truth and the verdict of one run, or why the run says nothing (the test never reached a dump). */
export function outcomeOf(plan: Plan, r: RunRecord): Outcome {
  const skip = /Skipping (\S+) \(([^)]*)\)/.exec(r.zdtmTail);
  if (r.dumpRcs.length === 0 && skip !== null) return { kind: 'not-runnable', why: `zdtm.py skips it here: ${skip[2] ?? ''}` };
  if (r.timedOut && r.dumpRcs.length === 0) return { kind: 'not-runnable', why: 'zdtm.py timed out before the dump' };
  if (r.dumpRcs.length === 0) return { kind: 'not-runnable', why: `the test did not start here: ${lastLines(r.zdtmTail, 3)}` };
  if (r.verdictRc === undefined) return { kind: 'not-runnable', why: 'migprobe was not called (no --tree in the dump)' };
  const rc = r.verdictRc.trim();
  let verdict: VerdictSummary;
  if (rc === '0' || rc === '1') {
    try {
      const v = JSON.parse(r.verdictJson ?? '') as { migratable: boolean; reasons: { code: string; message: string }[] };
      verdict = { migratable: v.migratable, codes: [...new Set(v.reasons.map((x) => x.code))], messages: v.reasons.map((x) => `${x.code}: ${x.message}`) };
    } catch {
      return { kind: 'not-runnable', why: `migprobe printed no JSON verdict (exit ${rc})` };
    }
  } else {
    // exit 2: a usage or internal error is no verdict; it counts as "not migratable" (the tool did not say yes)
    verdict = { migratable: false, codes: ['(exit 2)'], messages: [lastLines(r.verdictStderr ?? '', 2)] };
  }
  const crfail = plan.flags.includes('crfail');
  const dumpOk = r.dumpRcs.every((x) => x === 0);
  const restoreOk = r.restoreRcs.length > 0 && r.restoreRcs.every((x) => x === 0);
  let truth: Truth;
  if (!dumpOk) truth = { migratable: false, failedAt: 'dump' };
  else if (!restoreOk) truth = { migratable: false, failedAt: 'restore' };
  // The test's own verdict, as zdtm.py prints it once the test checked its state (zdtm's exit code also counts
  // its clean-up afterwards).
  else if (!/Test zdtm\/static\/\S+ PASS/.test(r.zdtmTail) || crfail) truth = { migratable: false, failedAt: 'check' };
  else truth = { migratable: true, failedAt: '' };
  return { kind: 'compared', truth, verdict, cls: classify(verdict.migratable, truth.migratable) };
}

export function classify(says: boolean, truth: boolean): Cls {
  if (says) return truth ? 'TP' : 'FP';
  return truth ? 'FN' : 'TN';
}

export interface Row {
  test: string;
  flavor?: string;
  flags?: string[];
  criuOpts?: string[];
  migprobeArgs?: string[];
  unmatched?: string[];
  outcome: Outcome;
  /** The first run's class when a rerun decided (a disagreement that did not reproduce). */
  firstRun?: Cls;
  criuErrors?: string[];
  ms?: number;
  /** A known cause for a disagreement (bench/zdtm/known.ts). */
  known?: string;
}

export interface Matrix {
  TP: number;
  TN: number;
  FP: number;
  FN: number;
}

export function matrixOf(rows: readonly Row[]): Matrix {
  const m: Matrix = { TP: 0, TN: 0, FP: 0, FN: 0 };
  for (const r of rows) if (r.outcome.kind === 'compared') m[r.outcome.cls]++;
  return m;
}

export interface ReportMeta {
  date: string;
  host: string;
  kernel: string;
  criu: string;
  command: string;
  jobs: number;
  wallSeconds: number;
  partial?: string;
  notes: string[];
}

function pct(n: number, d: number): string {
  return d === 0 ? '0 %' : `${((100 * n) / d).toFixed(1)} %`;
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The Markdown report: matrix, counts, disagreements, reasons, not runnable, one row per test. */
export function reportMarkdown(meta: ReportMeta, rows: readonly Row[]): string {
  const m = matrixOf(rows);
  const ran = m.TP + m.TN + m.FP + m.FN;
  const notRun = rows.filter((r) => r.outcome.kind === 'not-runnable');
  const out: string[] = [];
  out.push('# migprobe conformance on CRIU\'s zdtm static tests', '');
  if (meta.partial !== undefined) out.push(`**PARTIAL RUN**: ${meta.partial}`, '');
  out.push(
    `Generated by \`${meta.command}\` on ${meta.date} (${meta.host}, kernel ${meta.kernel}, CRIU ${meta.criu}, ` +
      `${meta.jobs} test(s) at a time, wall time ${Math.round(meta.wallSeconds)} s).`,
    '',
    'Truth: zdtm.py\'s own full C/R of the test (`criu dump`, the tasks killed, `criu restore`, then the test\'s own ' +
      'pass/fail check; a `crfail` test counts as not migratable). Verdict: `migprobe check --pid <the tree zdtm dumps> --json`, ' +
      'taken on the same running test just before zdtm\'s dump.',
    '',
  );
  for (const n of meta.notes) out.push(`- ${n}`);
  if (meta.notes.length > 0) out.push('');
  out.push(
    '## Confusion matrix',
    '',
    '| | C/R works | C/R fails |',
    '|---|---|---|',
    `| migprobe: migratable | ${m.TP} | ${m.FP} (false "migratable") |`,
    `| migprobe: not migratable | ${m.FN} (false "not migratable") | ${m.TN} |`,
    '',
    `Tests compared: ${ran}. False "migratable": ${m.FP} (${pct(m.FP, ran)}). False "not migratable": ${m.FN} (${pct(m.FN, ran)}). ` +
      `Not runnable here: ${notRun.length}. Total: ${rows.length}.`,
    '',
  );
  const dis = rows.filter((r) => r.outcome.kind === 'compared' && (r.outcome.cls === 'FP' || r.outcome.cls === 'FN'));
  out.push('## Disagreements', '');
  if (dis.length === 0) out.push('None.', '');
  else {
    out.push('| Test | Class | migprobe | Truth | Cause |', '|---|---|---|---|---|');
    for (const r of dis) {
      if (r.outcome.kind !== 'compared') continue;
      out.push(
        `| ${r.test} | ${r.outcome.cls} | ${cell(r.outcome.verdict.codes.join(', ') || 'migratable')} | ` +
          `${r.outcome.truth.migratable ? 'works' : `fails at ${r.outcome.truth.failedAt}`} | ${cell(r.known ?? 'not explained yet')} |`,
      );
    }
    out.push('');
  }
  const flaky = rows.filter((r) => r.firstRun !== undefined);
  if (flaky.length > 0) {
    out.push('## Disagreements that did not reproduce', '', 'The first run disagreed; a second run of the same test agreed and is the one counted.', '');
    for (const r of flaky) out.push(`- ${r.test}: first run ${r.firstRun ?? ''}, rerun ${r.outcome.kind === 'compared' ? r.outcome.cls : '-'}`);
    out.push('');
  }
  const byCode = new Map<string, string[]>();
  for (const r of rows) {
    if (r.outcome.kind !== 'compared') continue;
    for (const c of r.outcome.verdict.codes) byCode.set(c, [...(byCode.get(c) ?? []), r.test]);
  }
  out.push('## Reason codes migprobe gave', '', '| Code | Tests | Examples |', '|---|---|---|');
  for (const [c, ts] of [...byCode].sort((a, b) => b[1].length - a[1].length)) {
    out.push(`| \`${c}\` | ${ts.length} | ${ts.slice(0, 6).join(', ')}${ts.length > 6 ? ', ...' : ''} |`);
  }
  out.push('');
  const whys = new Map<string, string[]>();
  for (const r of notRun) {
    if (r.outcome.kind !== 'not-runnable') continue;
    const key = r.outcome.why.replace(/: .*$/, r.outcome.why.startsWith('zdtm.py skips') ? r.outcome.why.slice(r.outcome.why.indexOf(':')) : '');
    whys.set(key, [...(whys.get(key) ?? []), r.test]);
  }
  out.push('## Not runnable here', '', '| Why | Count | Tests |', '|---|---|---|');
  for (const [w, ts] of [...whys].sort((a, b) => b[1].length - a[1].length)) out.push(`| ${cell(w)} | ${ts.length} | ${ts.join(', ')} |`);
  out.push('');
  out.push('## Every test', '', '| Test | Flavor | migprobe | Truth | Class | Notes |', '|---|---|---|---|---|---|');
  for (const r of rows) {
    if (r.outcome.kind === 'not-runnable') {
      out.push(`| ${r.test} | | | | not run | ${cell(r.outcome.why)} |`);
      continue;
    }
    const o = r.outcome;
    const notes = [
      ...(r.migprobeArgs !== undefined && r.migprobeArgs.length > 0 ? [`migprobe ${r.migprobeArgs.join(' ')}`] : []),
      ...(r.unmatched !== undefined && r.unmatched.length > 0 ? [`CRIU also ${r.unmatched.join(' ')}`] : []),
      ...(o.truth.migratable ? [] : (r.criuErrors ?? []).slice(0, 1).map((e) => `CRIU: ${e.slice(0, 160)}`)),
    ];
    out.push(
      `| ${r.test} | ${r.flavor ?? ''} | ${cell(o.verdict.migratable ? 'migratable' : o.verdict.codes.join(', '))} | ` +
        `${o.truth.migratable ? 'works' : `fails at ${o.truth.failedAt}`} | ${o.cls} | ${cell(notes.join('; '))} |`,
    );
  }
  return out.join('\n') + '\n';
}
