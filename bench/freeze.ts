// Bench (not a test): our check against the baseline the CRIU wiki describes ("Probing C/R": a full
// `criu dump --leave-running`, copy the images, a full `criu restore`), measured in the same run on the same
// workloads: memhog with 10 MiB, 256 MiB and 1 GiB of dirty resident memory in real containers of the test bed.
//
//   eval "$(bash hack/testbed.sh env)" && node bench/freeze.ts [--runs N] [MiB ...]
//
// For each size it prints the workload freeze, the bytes shipped and the time to verdict of both, and each as a
// ratio ours / baseline. Aims: freeze <= 0.3 at 1 GiB, bytes <= 0.0001 (0.01%), time <= 0.2.

import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runContainer, testbed } from '../testbed/index.ts';
import { resolveContainer } from '../src/engine/container.ts';
import { checkContainer } from '../src/engine/probe.ts';
import type { ProbeDetail } from '../src/engine/probe.ts';
import { dumpCheck } from '../src/engine/dump.ts';
import { restoreCheck } from '../src/engine/restore.ts';
import { subjectFromContainer, addressesOf } from '../src/engine/subject.ts';
import { imageDirSize } from '../src/engine/images.ts';
import { collectNodeFacts } from '../src/engine/facts.ts';
import { DEFAULT_PROBE_OPTIONS } from '../src/engine/api.ts';

interface Row {
  mib: number;
  rssBytes: number;
  ours: { freezeMs: number; shippedBytes: number; verdictMs: number; migratable: boolean };
  base: { freezeMs: number; shippedBytes: number; verdictMs: number; ok: boolean };
}

const options = { ...DEFAULT_PROBE_OPTIONS, timeoutMs: 600_000, freezeBudgetMs: 60_000 };

async function waitReady(pid: number): Promise<void> {
  const { stat } = await import('node:fs/promises');
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      await stat(`/proc/${pid}/root/tmp/ready`);
      return;
    } catch {
      if (Date.now() > deadline) throw new Error('memhog never got ready');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function benchOne(mib: number): Promise<Row> {
  const tb = await testbed();
  const c = await runContainer({ args: ['/usr/local/bin/memhog', String(mib)], ip: '10.77.9.2' });
  const work = await mkdtemp(join(tmpdir(), 'migprobe-bench-'));
  try {
    await waitReady(c.pid);
    const ref = { containerId: c.id, namespace: tb.containerd.namespace, containerdAddress: tb.containerd.address };

    // Ours: the whole check.
    const detail: ProbeDetail = {};
    const t0 = performance.now();
    const v = await checkContainer(ref, options, {}, { workDir: join(work, 'ours'), detail });
    const oursMs = performance.now() - t0;
    process.stderr.write(`ours: ${JSON.stringify(v.timings)}\n`);

    // Baseline: full dump --leave-running, copy the images, full restore --leave-stopped, kill. Nothing else is
    // timed (the node facts our restore check reports are taken before the clock starts).
    const facts = await collectNodeFacts(tb.criu);
    const t1 = performance.now();
    const ci = await resolveContainer(ref);
    const d = await dumpCheck({
      subject: subjectFromContainer(ci, { externalTmpfs: false }),
      options,
      workDir: join(work, 'base-src'),
      criuVersion: 'baseline',
      full: true,
      manifest: {
        rootfs: { lowerdirs: ci.rootfs.lowerdirs, ...(ci.rootfs.upperdir === undefined ? {} : { upperdir: ci.rootfs.upperdir }) },
        addresses: addressesOf(ci),
        fileDigests: [],
      },
    });
    const bundle = join(work, 'base-src', 'bundle');
    const copied = join(work, 'base-dst');
    await cp(bundle, copied, { recursive: true });
    const shipped = (await imageDirSize(join(copied, 'images'))).totalBytes;
    await rm(bundle, { recursive: true, force: true });
    const r = await restoreCheck({ bundleDir: copied, options, target: {}, sameNode: true, workDir: join(work, 'base-restore'), facts, criuVersion: facts.criuVersion });
    const baseMs = performance.now() - t1;
    const ok = d.result.reasons.length === 0 && r.result.reasons.length === 0;
    if (!ok) console.error(`baseline ${mib} MiB: ${JSON.stringify([...d.result.reasons, ...r.result.reasons])}`);
    if (!v.migratable) console.error(`ours ${mib} MiB: ${JSON.stringify(v.reasons)}`);
    return {
      mib,
      rssBytes: v.sizes.workloadRssBytes ?? 0,
      ours: { freezeMs: v.timings.freezeMs ?? NaN, shippedBytes: v.sizes.shippedBytes ?? NaN, verdictMs: oursMs, migratable: v.migratable },
      base: { freezeMs: d.result.timings.freezeMs ?? NaN, shippedBytes: shipped, verdictMs: baseMs, ok },
    };
  } finally {
    await rm(work, { recursive: true, force: true });
    await c.remove();
  }
}

function fmtBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2;
}

/** Median of each measure over the runs (a noisy shared VM). */
function medianRow(runs: Row[]): Row {
  const first = runs[0];
  if (first === undefined) throw new Error('no runs');
  const pick = (f: (r: Row) => number): number => median(runs.map(f));
  return {
    mib: first.mib,
    rssBytes: pick((r) => r.rssBytes),
    ours: {
      freezeMs: pick((r) => r.ours.freezeMs),
      shippedBytes: pick((r) => r.ours.shippedBytes),
      verdictMs: pick((r) => r.ours.verdictMs),
      migratable: runs.every((r) => r.ours.migratable),
    },
    base: {
      freezeMs: pick((r) => r.base.freezeMs),
      shippedBytes: pick((r) => r.base.shippedBytes),
      verdictMs: pick((r) => r.base.verdictMs),
      ok: runs.every((r) => r.base.ok),
    },
  };
}

// Usage: node bench/freeze.ts [--runs N] [MiB ...]
const argv = process.argv.slice(2);
let runs = 1;
const runsAt = argv.indexOf('--runs');
if (runsAt >= 0) {
  runs = Math.max(1, Number(argv[runsAt + 1] ?? 1));
  argv.splice(runsAt, 2);
}
const sizes = argv.map(Number).filter((n) => n > 0);
const rows: Row[] = [];
for (const mib of sizes.length > 0 ? sizes : [10, 256, 1024]) {
  const all: Row[] = [];
  for (let i = 0; i < runs; i++) {
    process.stderr.write(`bench: ${mib} MiB, run ${i + 1}/${runs} ...\n`);
    all.push(await benchOne(mib));
  }
  rows.push(medianRow(all));
}
if (runs > 1) console.log(`Medians of ${runs} runs per size.\n`);
const lines = [
  '| workload | RSS | freeze ours / baseline (ratio) | shipped ours / baseline (ratio) | verdict ours / baseline (ratio) | ok |',
  '|---|---|---|---|---|---|',
];
for (const r of rows) {
  lines.push(
    `| memhog ${r.mib} MiB | ${fmtBytes(r.rssBytes)} | ${r.ours.freezeMs} ms / ${r.base.freezeMs} ms (${(r.ours.freezeMs / r.base.freezeMs).toFixed(3)}) | ` +
      `${fmtBytes(r.ours.shippedBytes)} / ${fmtBytes(r.base.shippedBytes)} (${((r.ours.shippedBytes / r.base.shippedBytes) * 100).toFixed(4)}%) | ` +
      `${Math.round(r.ours.verdictMs)} ms / ${Math.round(r.base.verdictMs)} ms (${(r.ours.verdictMs / r.base.verdictMs).toFixed(3)}) | ` +
      `${r.ours.migratable && r.base.ok ? 'yes' : 'NO'} |`,
  );
}
console.log(lines.join('\n'));
