// What `kubectl migprobe` prints. Pure: objects in, text out. A probe's verdict goes through the CLI's own
// formatter (src/cli/format.ts), the node pairs through pairMatrix (src/api/migrationnode.ts): one behaviour
// in one place.

import { stringify as toYaml } from 'yaml';
import { effectiveFacts, pairMatrix, type MigrationNode, type NodePair } from '../api/migrationnode.ts';
import type { MigrationReadiness, PodReadiness } from '../api/readiness.ts';
import { verdictFromStatus, type MigrationProbe, type StatusReason } from '../api/v1alpha1.ts';
import { formatMs, formatVerdict, table } from '../cli/format.ts';
import { REASON_CATALOG } from '../reasons.ts';
import { isReasonCode } from '../verdict.ts';

/** -o json / -o yaml of one object, or of several as a kubectl List. */
export function renderObjects(objs: unknown, format: 'json' | 'yaml'): string {
  return format === 'json' ? `${JSON.stringify(objs, null, 2)}\n` : toYaml(objs);
}

export function asList(items: readonly unknown[]): { apiVersion: 'v1'; kind: 'List'; items: unknown[] } {
  return { apiVersion: 'v1', kind: 'List', items: [...items] };
}

// ---- check -------------------------------------------------------------------------------------------------

/** A finished probe as `migprobe check` prints a verdict; a Failed probe (no verdict reached) says so first. */
export function renderProbe(p: MigrationProbe, width: number): string {
  const head = p.status?.phase === 'Failed' ? `PROBE FAILED: ${p.metadata.name ?? ''} could not reach a verdict (reasons below)\n` : '';
  return head + formatVerdict(verdictFromStatus(p.status ?? {}), width);
}

// ---- drain-check -------------------------------------------------------------------------------------------

const dash = (s: string | undefined): string => (s === undefined || s === '' ? '-' : s);

function migratableCell(p: PodReadiness): string {
  if (p.skipped !== undefined) return 'skipped';
  if (p.migratable === undefined) return 'pending';
  return p.migratable ? 'yes' : 'no';
}

function reasonsCell(p: PodReadiness): string {
  if (p.skipped !== undefined) return p.skipped;
  return dash((p.reasons ?? []).map((r) => r.code).join(','));
}

/** Rows of the per-pod table, sorted by namespace and name. `wide` adds the best target's freeze and the probes. */
export function podRows(pods: readonly PodReadiness[], wide: boolean): string[][] {
  const head = ['NAMESPACE', 'POD', 'OWNER', 'MIGRATABLE', 'BEST TARGET', 'TARGETS', 'REASONS'];
  const rows: string[][] = [wide ? [...head.slice(0, 6), 'FREEZE', 'PROBES', 'REASONS'] : head];
  const sorted = [...pods].sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  for (const p of sorted) {
    const base = [
      p.namespace,
      p.name,
      p.owner === undefined ? '-' : `${p.owner.kind}/${p.owner.name}`,
      migratableCell(p),
      dash(p.bestTarget),
      dash((p.compatibleTargets ?? []).join(',')),
    ];
    if (!wide) {
      rows.push([...base, reasonsCell(p)]);
      continue;
    }
    const best = p.targets?.find((t) => t.nodeName === p.bestTarget);
    const probes = (p.targets ?? []).flatMap((t) => t.probes ?? []);
    rows.push([...base, best?.freezeMilliseconds === undefined ? '-' : formatMs(best.freezeMilliseconds), dash(probes.join(',')), reasonsCell(p)]);
  }
  return rows;
}

/** The fix for a code: the first hint a pod's reasons carry, else the catalog's. */
function hintFor(code: string, pods: readonly PodReadiness[]): string {
  for (const p of pods) {
    const h = [...(p.reasons ?? []), ...(p.targets ?? []).flatMap((t) => t.reasons ?? [])].find((r) => r.code === code)?.hint;
    if (h !== undefined && h !== '') return h;
  }
  return isReasonCode(code) ? REASON_CATALOG[code].hint : '';
}

function reasonText(r: StatusReason): string {
  return `${r.code}: ${r.message}`;
}

/** The whole drain-check report: the per-pod table, ruled-out targets, blockers with their fix, the summary. */
export function renderReadiness(r: MigrationReadiness, wide: boolean): string {
  const s = r.status ?? {};
  const pods = s.pods ?? [];
  const out: string[] = [];
  out.push(pods.length === 0 ? `No pods selected on ${dash(r.spec.source.nodeName)}.` : table(podRows(pods, wide)).join('\n'));
  const ruledOut = (s.targets ?? []).filter((t) => !t.eligible);
  if (ruledOut.length > 0) {
    out.push('', 'Targets ruled out before any dump:');
    for (const t of ruledOut) {
      const pair = t.sourceNodeName === undefined ? t.nodeName : `${t.sourceNodeName} -> ${t.nodeName}`;
      out.push(`  ${pair}: ${(t.reasons ?? []).map(reasonText).join('; ') || 'not eligible'}`);
    }
  }
  const eligible = [...new Set((s.targets ?? []).filter((t) => t.eligible).map((t) => t.nodeName))];
  if ((s.targets ?? []).length > 0) out.push('', `Eligible targets: ${eligible.length === 0 ? 'none' : eligible.join(', ')}`);
  const counts = s.reasonCounts ?? [];
  if (counts.length > 0) {
    out.push('', 'Blockers:');
    for (const c of counts) {
      const hint = hintFor(c.code, pods);
      out.push(`  ${c.code} (${c.pods} pod${c.pods === 1 ? '' : 's'})${hint === '' ? '' : `: fix: ${hint}`}`);
    }
  }
  const t = s.totals;
  if (t !== undefined) {
    out.push('', `Pods ${t.pods}: ${t.migratable} migratable, ${t.blocked} blocked, ${t.pending} pending, ${t.skipped} skipped; ${t.probes} probes (run ${s.runId ?? '-'})`);
  }
  const d = s.conditions?.find((c) => c.type === 'Drainable');
  const drainable = d === undefined ? 'Unknown' : `${d.status} (${d.reason}): ${d.message}`;
  out.push(`Drainable: ${drainable}`);
  return out.join('\n') + '\n';
}

export function isDrainable(r: MigrationReadiness): boolean {
  return r.status?.conditions?.some((c) => c.type === 'Drainable' && c.status === 'True') === true;
}

/** Pods decided (a verdict, or skipped) and probes finished, out of their totals. */
export function readinessProgress(r: MigrationReadiness): { podsDecided: number; pods: number; probesDone: number; probes: number } {
  const pods = r.status?.pods ?? [];
  const podsDecided = pods.filter((p) => p.skipped !== undefined || p.migratable !== undefined).length;
  // A pod x target result is written once every probe of it finished; each names its probes.
  const probesDone = pods.reduce((n, p) => n + (p.targets ?? []).reduce((m, t) => m + (t.probes?.length ?? 1), 0), 0);
  return { podsDecided, pods: r.status?.totals?.pods ?? pods.length, probesDone, probes: r.status?.totals?.probes ?? 0 };
}

/** The progress line drain-check keeps on stderr while it waits. */
export function progressLine(r: MigrationReadiness | undefined, elapsedMs: number): string {
  const secs = `${Math.floor(elapsedMs / 1000)}s`;
  if (r?.status?.phase === undefined) return `${r?.metadata.name ?? 'readiness'}: waiting for the controller (${secs})`;
  const p = readinessProgress(r);
  return `${r.metadata.name ?? ''}: ${r.status.phase}, run ${r.status.runId ?? '-'}: probes ${p.probesDone}/${p.probes} done, pods ${p.podsDecided}/${p.pods} decided (${secs})`;
}

// ---- nodes -------------------------------------------------------------------------------------------------

/** The facts fields spec.factsOverride sets, for the OVERRIDE column. */
function overridden(n: MigrationNode): string {
  return dash(Object.keys(n.spec?.factsOverride ?? {}).sort().join(','));
}

function nodeRows(nodes: readonly MigrationNode[], wide: boolean): string[][] {
  const head = ['NODE', 'ARCH', 'KERNEL', 'CRIU', 'CPU', 'OVERRIDE', 'UPDATED'];
  const rows: string[][] = [wide ? [...head, 'FEATURES', 'MISSING'] : head];
  for (const n of [...nodes].sort((a, b) => (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''))) {
    const f = effectiveFacts(n);
    const cpu = f.cpu === undefined ? '-' : `${dash(f.cpu.vendor)} (${f.cpu.flags?.length ?? 0} flags)`;
    const row = [n.metadata.name ?? '', dash(f.arch), dash(f.kernelRelease), dash(f.criuVersion), cpu, overridden(n), dash(n.status?.lastUpdateTime)];
    if (wide) {
      const feats = Object.entries(f.criuFeatures ?? {});
      row.push(dash(feats.filter(([, on]) => on).map(([k]) => k).join(',')), dash(feats.filter(([, on]) => !on).map(([k]) => k).join(',')));
    }
    rows.push(row);
  }
  return rows;
}

/** The matrix: rows are sources, columns targets; `ok`, the reason codes, or `-` on the diagonal. */
export function matrixRows(pairs: readonly NodePair[]): string[][] {
  const names = [...new Set(pairs.flatMap((p) => [p.source, p.target]))].sort((a, b) => a.localeCompare(b));
  const cell = new Map(pairs.map((p) => [`${p.source}\u0000${p.target}`, p.compatible ? 'ok' : p.reasons.map((r) => r.code).join(',')]));
  return [
    ['SOURCE \\ TARGET', ...names],
    ...names.map((s) => [s, ...names.map((t) => (s === t ? '-' : (cell.get(`${s}\u0000${t}`) ?? '?')))]),
  ];
}

export function renderNodes(nodes: readonly MigrationNode[], wide: boolean): string {
  if (nodes.length === 0) return 'No MigrationNodes: is the migprobe agent running (kubectl get daemonset -A -l app.kubernetes.io/name=migprobe-agent)?\n';
  const pairs = pairMatrix(nodes);
  const out = [...table(nodeRows(nodes, wide)), ''];
  if (pairs.length === 0) out.push('One node: no pair to compare.');
  else out.push(...table(matrixRows(pairs)));
  const bad = pairs.filter((p) => !p.compatible);
  if (bad.length > 0) {
    out.push('', 'Incompatible pairs:');
    for (const p of bad) out.push(`  ${p.source} -> ${p.target}: ${p.reasons.map((r) => `${r.code}: ${r.message}`).join('; ')}`);
  }
  return out.join('\n') + '\n';
}
