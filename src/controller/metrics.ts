// migprobe's own metrics (beside controller-runtime's, from kube/metrics.ts): probe duration, freeze time,
// image bytes and verdicts by reason. Observed once per probe, when its final status was written.

import type { Registry } from 'prom-client';
import { counter, histogram } from '../kube/metrics.ts';
import type { MigrationProbe, MigrationProbeStatus } from '../api/v1alpha1.ts';
import type { ProbeMetricsSink } from './reconcile.ts';

export function probeMetrics(registry: Registry): ProbeMetricsSink {
  const duration = histogram(registry, {
    name: 'migprobe_probe_duration_seconds',
    help: 'Time from a probe start to its verdict, by final phase',
    labelNames: ['phase'],
    buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
  });
  const freeze = histogram(registry, {
    name: 'migprobe_probe_freeze_seconds',
    help: 'Pause the workload felt during the dump check',
    labelNames: [],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
  });
  const images = histogram(registry, {
    name: 'migprobe_probe_image_bytes',
    help: 'Size of the CRIU image set written by the dump check (no memory contents)',
    labelNames: [],
    buckets: [1e4, 3e4, 1e5, 3e5, 1e6, 1e7, 1e8, 1e9],
  });
  const verdicts = counter(registry, {
    name: 'migprobe_probe_verdicts_total',
    help: 'Finished probes by outcome and reason code (one count per reason; reason "" when migratable)',
    labelNames: ['phase', 'migratable', 'reason'],
  });
  return {
    finished(p: MigrationProbe, s: MigrationProbeStatus) {
      const phase = s.phase ?? 'Failed';
      const start = Date.parse(s.startTime ?? p.status?.startTime ?? String(p.metadata.creationTimestamp ?? ''));
      const end = Date.parse(s.completionTime ?? '');
      if (!Number.isNaN(start) && !Number.isNaN(end)) duration.observe({ phase }, Math.max(0, end - start) / 1000);
      if (s.timings?.freezeMilliseconds !== undefined) freeze.observe(s.timings.freezeMilliseconds / 1000);
      if (s.sizes?.imageBytes !== undefined) images.observe(s.sizes.imageBytes);
      const migratable = String(s.migratable === true);
      const reasons = s.reasons ?? [];
      if (reasons.length === 0) verdicts.inc({ phase, migratable, reason: '' });
      for (const r of reasons) verdicts.inc({ phase, migratable, reason: r.code });
    },
  };
}
