// Generated sections of the README: the CRD reference (from crds/, one section per CRD: `gen:crd` for
// MigrationProbe, `gen:crd:<plural>` for every other, e.g. `gen:crd:migrationnodes`) and the reason codes
// (from src/reasons.ts). `node hack/docs.ts` rewrites them in place; test/docs/readme.test.ts fails when
// the README drifts from its sources, or lacks the section of a CRD in crds/.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { catalogMarkdown } from '../src/reasons.ts';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const README = join(ROOT, 'README.md');
export const CRDS = join(ROOT, 'crds');
export const CRD = join(CRDS, 'migprobe.io_migrationprobes.yaml');

interface Schema {
  type?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  required?: string[];
}

function oneLine(s: string | undefined): string {
  return (s ?? '').replace(/\s+/g, ' ').replace(/\|/g, '\\|').trim();
}

function typeOf(s: Schema): string {
  if (s.type === 'array') return `[]${s.items ? typeOf(s.items) : 'any'}`;
  if (s.type === 'object' && typeof s.additionalProperties === 'object') return `map[string]${typeOf(s.additionalProperties)}`;
  return s.type ?? 'any';
}

function rows(prefix: string, s: Schema, required: Set<string>, out: string[]): void {
  for (const [name, child] of Object.entries(s.properties ?? {})) {
    const path = `${prefix}.${name}`;
    const notes: string[] = [];
    if (required.has(name)) notes.push('required');
    if (child.default !== undefined) notes.push(`default \`${JSON.stringify(child.default)}\``);
    if (child.enum) notes.push(`one of ${child.enum.map((e) => `\`${String(e)}\``).join(', ')}`);
    if (child.minimum !== undefined || child.maximum !== undefined) notes.push(`range ${child.minimum ?? ''}..${child.maximum ?? ''}`);
    out.push(`| \`${path}\` | ${typeOf(child)} | ${notes.join('; ')} | ${oneLine(child.description)} |`);
    const inner = child.type === 'array' ? child.items : child;
    if (inner?.properties) rows(child.type === 'array' ? `${path}[]` : path, inner, new Set(inner.required ?? []), out);
  }
}

/** Markdown tables of spec and status fields, from the CRD's schema. */
export function crdMarkdown(crdYaml: string): string {
  const crd = parse(crdYaml) as { spec: { versions: { name: string; schema: { openAPIV3Schema: Schema } }[] } };
  const version = crd.spec.versions[0];
  if (!version) throw new Error('the CRD has no version');
  const root = version.schema.openAPIV3Schema;
  const out: string[] = [];
  for (const part of ['spec', 'status'] as const) {
    const s = root.properties?.[part];
    if (!s) continue;
    out.push(`**${part}** (${version.name})`, '', '| Field | Type | Notes | Description |', '|---|---|---|---|');
    rows(part, s, new Set(s.required ?? []), out);
    out.push('');
  }
  return out.join('\n');
}

/** One README section per CRD file in crds/ (`migprobe.io_<plural>.yaml`): `crd` for migrationprobes, else `crd:<plural>`. */
export function crdSections(dir: string = CRDS): Record<string, () => string> {
  const out: Record<string, () => string> = {};
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.yaml')).sort()) {
    const plural = /^[^_]+_(.+)\.yaml$/.exec(f)?.[1] ?? f;
    out[plural === 'migrationprobes' ? 'crd' : `crd:${plural}`] = () => crdMarkdown(readFileSync(join(dir, f), 'utf8'));
  }
  return out;
}

const SECTIONS: Record<string, () => string> = {
  ...crdSections(),
  reasons: () => catalogMarkdown(),
};

/** Replaces the text between `<!-- gen:NAME -->` and `<!-- /gen:NAME -->` with its generated content. */
export function renderReadme(readme: string): string {
  let out = readme;
  for (const [name, gen] of Object.entries(SECTIONS)) {
    const re = new RegExp(`(<!-- gen:${name} -->\\n)[\\s\\S]*?(<!-- /gen:${name} -->)`);
    if (!re.test(out)) throw new Error(`README.md has no <!-- gen:${name} --> section`);
    out = out.replace(re, (_m, open: string, close: string) => `${open}${gen().trimEnd()}\n${close}`);
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(README, renderReadme(readFileSync(README, 'utf8')));
  console.log('README.md generated sections updated');
}
