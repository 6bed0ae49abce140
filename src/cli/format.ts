// Terminal rendering of a Verdict and of NodeFacts. Pure.

import type { NonLazyMemory, Verdict } from '../verdict.ts';
import type { NodeFacts } from '../engine/index.ts';

export function formatBytes(n: number | undefined): string {
  if (n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u] ?? ''}`;
}

export function formatMs(n: number | undefined): string {
  if (n === undefined) return '-';
  return n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`;
}

/** Wrap `text` to `width` columns, continuation lines indented by `indent` spaces. */
function wrap(text: string, width: number, indent: number): string {
  const words = text.split(/\s+/).filter((w) => w !== '');
  const lines: string[] = [];
  let cur = '';
  for (const w of words) {
    if (cur !== '' && cur.length + 1 + w.length > width) {
      lines.push(cur);
      cur = w;
    } else cur = cur === '' ? w : `${cur} ${w}`;
  }
  if (cur !== '') lines.push(cur);
  return lines.join(`\n${' '.repeat(indent)}`);
}

/** Rows as aligned columns (two spaces apart, the last column unpadded), one string per row. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}

/** The non-lazy memory line: the total and each kind that holds any. */
function nonLazyRow(m: NonLazyMemory): string[] {
  const kinds: [string, number][] = [
    ["mlock'ed", m.mlockedBytes], ['shared', m.sharedMemoryBytes], ['SysV shm', m.sysvShmBytes],
    ['dirty file', m.dirtyPrivateFileBytes], ['tmpfs', m.tmpfsBytes],
  ];
  return ['Non-lazy', `total ${formatBytes(m.totalBytes)}`, ...kinds.filter(([, n]) => n > 0).map(([k, n]) => `${k} ${formatBytes(n)}`)];
}

export function formatVerdict(v: Verdict, width = 100): string {
  const out: string[] = [];
  const n = v.reasons.length;
  out.push(v.migratable ? 'MIGRATABLE' : `NOT MIGRATABLE (${n} blocker${n === 1 ? '' : 's'})`);
  out.push('');
  const t = v.timings;
  const s = v.sizes;
  out.push(
    ...table([
      ['CRIU', `source ${v.criu.source ?? '-'}`, `target ${v.criu.target ?? '-'}`],
      ['Timings', `preflight ${formatMs(t.preflightMs)}`, `freeze ${formatMs(t.freezeMs)}`, `dump ${formatMs(t.dumpMs)}`,
        `transfer ${formatMs(t.transferMs)}`, `restore ${formatMs(t.restoreMs)}`, `total ${formatMs(t.totalMs)}`],
      ['Sizes', `images ${formatBytes(s.imageBytes)}`, `shipped ${formatBytes(s.shippedBytes)}`,
        `workload RSS ${formatBytes(s.workloadRssBytes)}`],
      ...(s.nonLazyMemory === undefined ? [] : [nonLazyRow(s.nonLazyMemory)]),
    ]),
  );
  if (n > 0) {
    out.push('');
    const codeW = Math.max(4, ...v.reasons.map((r) => r.code.length));
    const phaseW = Math.max(5, ...v.reasons.map((r) => r.phase.length));
    const indent = codeW + phaseW + 4;
    const textW = Math.max(30, width - indent);
    out.push(`${'CODE'.padEnd(codeW)}  ${'PHASE'.padEnd(phaseW)}  MESSAGE`);
    for (const r of v.reasons) {
      out.push(`${r.code.padEnd(codeW)}  ${r.phase.padEnd(phaseW)}  ${wrap(r.message, textW, indent)}`);
      out.push(`${' '.repeat(indent)}${wrap(`fix: ${r.hint}`, textW, indent)}`);
    }
  }
  if (v.criuLogExcerpt !== undefined && v.criuLogExcerpt !== '') {
    out.push('', 'CRIU log excerpt:', ...v.criuLogExcerpt.split('\n').map((l) => `  ${l}`));
  }
  return out.join('\n') + '\n';
}

export function formatFacts(f: NodeFacts): string {
  const feats = Object.entries(f.criuFeatures);
  const rows: string[][] = [
    ['Hostname', f.hostname],
    ['Architecture', f.arch],
    ['Kernel', f.kernelRelease],
    ['CPU', `${f.cpu.vendor} ${f.cpu.model} (${f.cpu.flags.length} flags)`],
    ['MemAvailable', formatBytes(f.memAvailableBytes)],
    ['CRIU', f.criuVersion],
    ['Features', feats.filter(([, on]) => on).map(([k]) => k).join(' ') || '-'],
    ['Missing', feats.filter(([, on]) => !on).map(([k]) => k).join(' ') || '-'],
  ];
  return table(rows).join('\n') + '\n';
}
