// The Grafana dashboard the chart ships: off by default; on, a ConfigMap in the sidecar-discovery convention
// (label grafana_dashboard: "1", or the configured label, namespace and annotations) whose JSON parses, reads
// from a Prometheus data source variable, and queries only metrics the controller registers (read from
// src/controller/, so renaming a metric there fails this test until the dashboard follows).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { testbed } from '../../testbed/index.ts';
import { run } from '../../testbed/proc.ts';
import { CHART_DIR, ROOT, at, helmTemplate, parseObjects, type KObject } from './lib.ts';

const NS = 'migprobe-system';

function sourcesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .map((f) => join(dir, f));
}

/** Metric names registered in src/controller/ (`name: 'migprobe_...'`), each with the series it exposes. */
function registeredSeries(): Map<string, string> {
  const series = new Map<string, string>();
  for (const file of sourcesUnder(join(ROOT, 'src', 'controller'))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/name:\s*['"`](migprobe_[a-z0-9_]+)['"`]/g)) {
      const name = m[1] ?? '';
      series.set(name, name);
      // A histogram also exposes _bucket, _count and _sum.
      if (/histogram/i.test(text.slice(Math.max(0, (m.index ?? 0) - 200), m.index))) {
        for (const s of ['_bucket', '_count', '_sum']) series.set(`${name}${s}`, name);
      }
    }
  }
  return series;
}

interface Panel {
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: { expr?: string; datasource?: { uid?: string } }[];
  panels?: Panel[];
}

function dashboardOf(objs: KObject[]): { cm: KObject; dash: { uid: string; panels: Panel[]; templating: { list: { name: string; type: string; query: unknown }[] } } } {
  const cms = objs.filter((o) => o.kind === 'ConfigMap' && o.metadata.name.endsWith('-grafana-dashboard'));
  assert.equal(cms.length, 1, 'one dashboard ConfigMap');
  const cm = cms[0]!;
  const text = at(cm, 'data', 'migprobe.json');
  assert.equal(typeof text, 'string');
  return { cm, dash: JSON.parse(text as string) as never };
}

test('the dashboard is off by default', async () => {
  const tb = await testbed();
  const objs = parseObjects(await helmTemplate(tb.helm, {}));
  assert.deepEqual(objs.filter((o) => o.kind === 'ConfigMap').map((o) => o.metadata.name), []);
  assert.equal(objs.filter((o) => o.metadata.labels?.grafana_dashboard !== undefined).length, 0);
});

test('on: a sidecar-discoverable ConfigMap holding the dashboard file, its JSON intact', async () => {
  const tb = await testbed();
  const objs = parseObjects(await helmTemplate(tb.helm, { args: ['--set', 'grafanaDashboard.enabled=true'] }));
  const { cm, dash } = dashboardOf(objs);
  assert.equal(cm.apiVersion, 'v1');
  assert.equal(cm.metadata.namespace, NS);
  assert.equal(cm.metadata.labels?.grafana_dashboard, '1');
  assert.equal(cm.metadata.labels?.['app.kubernetes.io/part-of'], 'migprobe');
  assert.deepEqual(dash, JSON.parse(readFileSync(join(CHART_DIR, 'dashboards', 'migprobe.json'), 'utf8')), 'the file, unchanged');
  assert.equal(dash.uid, 'migprobe');
  // The data source is a variable of type datasource over Prometheus, and every panel and query reads it.
  const dsVar = dash.templating.list.find((v) => v.type === 'datasource');
  assert.deepEqual([dsVar?.name, dsVar?.query], ['datasource', 'prometheus']);
  const panels = dash.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
  assert.ok(panels.length >= 8, `${panels.length} panels`);
  for (const p of panels) {
    assert.deepEqual(p.datasource, { type: 'prometheus', uid: '${datasource}' }, p.title);
    assert.ok((p.targets ?? []).length > 0, `${p.title} has a query`);
    for (const t of p.targets ?? []) assert.equal(t.datasource?.uid, '${datasource}', p.title);
  }
  // Configurable label, value, extra labels, annotations and namespace (the sidecar's searchNamespace).
  const custom = parseObjects(await helmTemplate(tb.helm, {
    args: [
      '--set', 'grafanaDashboard.enabled=true', '--set', 'grafanaDashboard.label=my_dash', '--set', 'grafanaDashboard.labelValue=yes',
      '--set', 'grafanaDashboard.namespace=monitoring', '--set', 'grafanaDashboard.annotations.grafana_folder=migprobe',
      '--set', 'grafanaDashboard.labels.team=infra',
    ],
  }));
  const c = dashboardOf(custom).cm;
  assert.equal(c.metadata.namespace, 'monitoring');
  assert.equal(c.metadata.labels?.my_dash, 'yes');
  assert.equal(c.metadata.labels?.team, 'infra');
  assert.equal(c.metadata.labels?.grafana_dashboard, undefined);
  assert.deepEqual(at(c, 'metadata', 'annotations'), { grafana_folder: 'migprobe' });
  // The schema refuses a label key Kubernetes would refuse.
  const bad = await run(tb.helm, ['template', 'x', CHART_DIR, '--set', 'grafanaDashboard.enabled=true', '--set', 'grafanaDashboard.label=not a key'], { allowFail: true });
  assert.notEqual(bad.exitCode, 0);
  assert.match(bad.stderr, /grafanaDashboard/);
});

test('every metric the dashboard queries is one src/controller/ registers; the panels the issue asks for are there', () => {
  const dash = JSON.parse(readFileSync(join(CHART_DIR, 'dashboards', 'migprobe.json'), 'utf8')) as { panels: Panel[]; templating: { list: { query?: unknown; definition?: string }[] } };
  const registered = registeredSeries();
  assert.ok(registered.has('migprobe_probe_verdicts_total'), `the grep finds the registered metrics: ${[...registered.keys()].join(', ')}`);
  const exprs = [
    ...dash.panels.flatMap((p) => [p, ...(p.panels ?? [])]).flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? '')),
    ...dash.templating.list.map((v) => v.definition ?? ''),
  ];
  const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\bmigprobe_[a-z0-9_]+/g)].map((m) => m[0])));
  for (const name of used) assert.ok(registered.has(name), `the dashboard queries ${name}, which src/controller/ does not register (registered: ${[...registered.keys()].join(', ')})`);
  const families = new Set([...used].map((n) => registered.get(n)));
  for (const want of [
    'migprobe_probe_verdicts_total',
    'migprobe_probe_freeze_seconds',
    'migprobe_probe_duration_seconds',
    'migprobe_readiness_pods',
    'migprobe_readiness_drainable',
    'migprobe_readiness_verdict_changes_total',
    'migprobe_node_pair_compatible',
  ]) assert.ok(families.has(want), `a panel shows ${want}`);
  assert.ok(exprs.some((e) => /histogram_quantile\(0\.95, sum by \(le\) \(rate\(migprobe_probe_freeze_seconds_bucket/.test(e)), 'freeze time quantiles');
});
