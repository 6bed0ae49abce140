// Every fix hint names a flag or field that exists: the reason catalog's hints and every hint written in the
// source (a `hint` property, the third argument of reason()) are scanned for `--flag` names and probe fields.
// A flag is the CLI's unless the hint attributes it to another program (CRIU, migprobe-agent, unshare) in the
// same parenthesis; CLI flags must be in CLI_FLAGS, agent flags in the agent's parseArgs options; `options.x`
// and `spec.x` must be in the CRD schema, `agent.x` in the chart's values.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parse } from 'yaml';
import { REASON_CATALOG } from '../reasons.ts';
import { CLI_FLAGS } from './args.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

type Program = 'cli' | 'agent' | 'criu' | 'other';

/** `--flag` names in a hint with the program each belongs to. Pure. */
export function flagsIn(hint: string): { flag: string; program: Program }[] {
  const out: { flag: string; program: Program }[] = [];
  // One scope per parenthesis: it starts with its parent's program; a program's name sets it until `;` or `: `.
  const stack: { start: Program; now: Program }[] = [{ start: 'cli', now: 'cli' }];
  const re = /--[a-z][a-z0-9-]*|\bmigprobe-agent\b|\bmigprobe\b|\bCLI\b|\bCRIU\b|\bcriu\b|\bunshare\b|[();]|: /g;
  for (const m of hint.matchAll(re)) {
    const tok = m[0];
    const top = stack[stack.length - 1] ?? { start: 'cli', now: 'cli' };
    if (tok === '(') stack.push({ start: top.now, now: top.now });
    else if (tok === ')') {
      if (stack.length > 1) stack.pop();
    } else if (tok === ';' || tok === ': ') top.now = top.start;
    else if (tok === 'migprobe-agent') top.now = 'agent';
    else if (tok === 'migprobe' || tok === 'CLI') top.now = 'cli';
    else if (tok === 'CRIU' || tok === 'criu') top.now = 'criu';
    else if (tok === 'unshare') top.now = 'other';
    else out.push({ flag: tok, program: top.now });
  }
  return out;
}

/** Probe spec fields (`spec.x.y`, `options.x` meaning spec.options.x) and chart values (`agent.x`) a hint names. Pure. */
export function fieldsIn(hint: string): { crd: string[]; values: string[] } {
  const crd = [...hint.matchAll(/(?<![\w.])((?:spec\.)?options\.[A-Za-z]+|spec\.[A-Za-z]+(?:\.[A-Za-z]+)*)/g)].map((m) => {
    const f = m[1] ?? '';
    return f.startsWith('spec.') ? f : `spec.${f}`;
  });
  const values = [...hint.matchAll(/(?<![\w.])((?:agent|controller)\.[a-z][A-Za-z]*)/g)].map((m) => m[1] ?? '');
  return { crd, values };
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** The text of every string piece under a node (template placeholders become `…`). */
function textOf(node: ts.Node): string {
  const parts: string[] = [];
  const visit = (n: ts.Node): void => {
    if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) parts.push(n.text);
    else if (ts.isTemplateExpression(n)) {
      parts.push(n.head.text);
      for (const s of n.templateSpans) {
        visit(s.expression);
        parts.push('…', s.literal.text);
      }
      return;
    }
    n.forEachChild(visit);
  };
  visit(node);
  return parts.join('');
}

/** Hints written in the source: `hint` properties and reason()'s third argument, with where they are. */
function sourceHints(): { where: string; text: string }[] {
  const out: { where: string; text: string }[] = [];
  for (const file of sourceFiles(join(ROOT, 'src'))) {
    const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
    const where = (n: ts.Node): string => `${file.slice(ROOT.length)}:${sf.getLineAndCharacterOfPosition(n.getStart()).line + 1}`;
    const visit = (n: ts.Node): void => {
      if (ts.isPropertyAssignment(n) && n.name.getText(sf) === 'hint') out.push({ where: where(n), text: textOf(n.initializer) });
      if (ts.isCallExpression(n) && n.expression.getText(sf) === 'reason' && n.arguments[2] !== undefined) {
        out.push({ where: where(n), text: textOf(n.arguments[2]) });
      }
      n.forEachChild(visit);
    };
    visit(sf);
  }
  return out;
}

/** The agent's flags: the option names of parseArgs in src/agent/main.ts. */
function agentFlags(): Set<string> {
  const file = join(ROOT, 'src/agent/main.ts');
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out = new Set<string>();
  const visit = (n: ts.Node): void => {
    if (ts.isCallExpression(n) && n.expression.getText(sf) === 'parseArgs') {
      const arg = n.arguments[0];
      const options = arg !== undefined && ts.isObjectLiteralExpression(arg)
        ? arg.properties.find((p): p is ts.PropertyAssignment => ts.isPropertyAssignment(p) && p.name.getText(sf) === 'options')
        : undefined;
      if (options !== undefined && ts.isObjectLiteralExpression(options.initializer)) {
        for (const p of options.initializer.properties) if (p.name !== undefined) out.add(`--${p.name.getText(sf).replace(/^['"]|['"]$/g, '')}`);
      }
    }
    n.forEachChild(visit);
  };
  visit(sf);
  return out;
}

interface Schema {
  properties?: Record<string, Schema>;
  items?: Schema;
}

/** Dotted paths (spec.x.y, status.x) of every CRD's schema in crds/ (MigrationProbe, MigrationReadiness, MigrationNode). */
function crdFields(): Set<string> {
  const out = new Set<string>();
  for (const file of readdirSync(join(ROOT, 'crds')).filter((f) => f.endsWith('.yaml'))) {
    const crd = parse(readFileSync(join(ROOT, 'crds', file), 'utf8')) as {
      spec: { versions: { schema: { openAPIV3Schema: Schema } }[] };
    };
    walkCrd(crd, out);
  }
  return out;
}

function walkCrd(crd: { spec: { versions: { schema: { openAPIV3Schema: Schema } }[] } }, out: Set<string>): void {
  const walk = (s: Schema, path: string): void => {
    for (const [k, v] of Object.entries(s.properties ?? {})) {
      const p = path === '' ? k : `${path}.${k}`;
      out.add(p);
      walk(v.items ?? v, p);
    }
  };
  for (const v of crd.spec.versions) walk(v.schema.openAPIV3Schema, '');
}

function valuesHas(path: string): boolean {
  let v: unknown = parse(readFileSync(join(ROOT, 'charts/migprobe/values.yaml'), 'utf8'));
  for (const k of path.split('.')) {
    if (typeof v !== 'object' || v === null || !(k in v)) return false;
    v = (v as Record<string, unknown>)[k];
  }
  return true;
}

void test('flagsIn attributes each flag to the program the hint names for it', () => {
  assert.deepEqual(flagsIn('set x (CLI --tcp-established, CRIU --tcp-established) if ...'), [
    { flag: '--tcp-established', program: 'cli' },
    { flag: '--tcp-established', program: 'criu' },
  ]);
  assert.deepEqual(flagsIn("socket (migprobe --address, migprobe-agent --containerd-address), or the root (--target-root)").map((f) => f.program), ['cli', 'agent', 'cli']);
  assert.deepEqual(flagsIn("CRIU's own remedies (--external mnt[...], --enable-external-sharing) need it").map((f) => f.program), ['criu', 'criu']);
  assert.deepEqual(flagsIn('probe with --allow-uprobes (CLI; CRIU --allow-uprobes on dump)').map((f) => f.program), ['cli', 'criu']);
  assert.deepEqual(flagsIn('without --skip-in-flight; check with --target-rootfs').map((f) => f.program), ['cli', 'cli']);
  assert.deepEqual(fieldsIn('raise spec.options.freezeBudgetMilliseconds (CLI --freeze-budget) or options.fileLocks; agent.privileged: true'), {
    crd: ['spec.options.freezeBudgetMilliseconds', 'spec.options.fileLocks'],
    values: ['agent.privileged'],
  });
});

void test('every hint names only flags and fields that exist', () => {
  const hints = [
    ...Object.entries(REASON_CATALOG).map(([code, info]) => ({ where: `REASON_CATALOG.${code}`, text: info.hint })),
    ...sourceHints(),
  ];
  assert.ok(hints.length > 60, `found ${hints.length} hints`);
  const agent = agentFlags();
  assert.ok(agent.has('--containerd-address') && agent.has('--node-name'), `agent flags: ${[...agent].join(' ')}`);
  const crd = crdFields();
  assert.ok(crd.has('spec.options.fileLocks'), 'CRD schema read');
  const wrong: string[] = [];
  let checked = 0;
  for (const h of hints) {
    for (const { flag, program } of flagsIn(h.text)) {
      const known = program === 'cli' ? CLI_FLAGS : program === 'agent' ? agent : undefined;
      if (known === undefined) continue;
      checked++;
      if (!known.has(flag)) wrong.push(`${h.where}: ${program === 'cli' ? 'migprobe' : 'migprobe-agent'} has no ${flag}: ${h.text}`);
    }
    const f = fieldsIn(h.text);
    for (const field of f.crd) {
      checked++;
      if (!crd.has(field)) wrong.push(`${h.where}: no CRD in crds/ has ${field}: ${h.text}`);
    }
    for (const field of f.values) {
      checked++;
      if (!valuesHas(field)) wrong.push(`${h.where}: the chart's values have no ${field}: ${h.text}`);
    }
  }
  assert.ok(checked > 20, `checked ${checked} names`);
  assert.deepEqual(wrong, []);
});
