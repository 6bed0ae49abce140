import { test } from 'node:test';
import assert from 'node:assert/strict';
import { comparePair, effectiveFacts, pairMatrix, type MigrationNode, type NodeFactsView } from './migrationnode.ts';

const facts = (over: NodeFactsView = {}): NodeFactsView => ({
  arch: 'x86_64',
  kernelRelease: '6.18.0',
  criuVersion: '4.2.1',
  criuFeatures: { mem_dirty_track: true, uffd: true },
  memAvailableBytes: 8 * 2 ** 30,
  cpu: { vendor: 'GenuineIntel', model: 'm', flags: ['sse2', 'avx2'] },
  ...over,
});
const node = (name: string, observed: NodeFactsView | undefined, override?: NodeFactsView): MigrationNode => ({
  metadata: { name },
  ...(override !== undefined ? { spec: { factsOverride: override } } : {}),
  ...(observed !== undefined ? { status: { observedFacts: observed } } : {}),
});

test('effectiveFacts lays the override over what was observed, features key by key and cpu field by field', () => {
  const e = effectiveFacts(node('a', facts(), { kernelRelease: '5.10.0', criuFeatures: { uffd: false }, cpu: { flags: ['sse2'] } }));
  assert.equal(e.kernelRelease, '5.10.0');
  assert.equal(e.arch, 'x86_64');
  assert.deepEqual(e.criuFeatures, { mem_dirty_track: true, uffd: false });
  assert.deepEqual(e.cpu, { vendor: 'GenuineIntel', model: 'm', flags: ['sse2'] });
  assert.deepEqual(effectiveFacts(node('b', facts())), facts());
});

test('comparePair: identical nodes are compatible; an older kernel, another arch or missing flags are not', () => {
  assert.deepEqual(comparePair({ name: 'a', facts: facts() }, { name: 'b', facts: facts() }), { source: 'a', target: 'b', compatible: true, reasons: [] });
  const old = comparePair({ name: 'a', facts: facts() }, { name: 'b', facts: facts({ kernelRelease: '5.10.0' }) });
  assert.equal(old.compatible, false);
  assert.deepEqual(old.reasons.map((r) => r.code), ['KernelMismatch']);
  assert.match(old.reasons[0]?.message ?? '', /5\.10\.0/);
  const arm = comparePair({ name: 'a', facts: facts() }, { name: 'b', facts: facts({ arch: 'aarch64' }) });
  assert.ok(arm.reasons.some((r) => r.code === 'ArchMismatch'));
  const cpu = comparePair({ name: 'a', facts: facts() }, { name: 'b', facts: facts({ cpu: { vendor: 'GenuineIntel', model: 'm', flags: ['sse2'] } }) });
  assert.deepEqual(cpu.reasons.map((r) => r.code), ['CPUIncompatible']);
  // The newer kernel is fine in the other direction.
  assert.equal(comparePair({ name: 'b', facts: facts({ kernelRelease: '5.10.0' }) }, { name: 'a', facts: facts() }).compatible, true);
});

test('comparePair: a node without facts is never compatible, and says so', () => {
  const p = comparePair({ name: 'a', facts: facts() }, { name: 'c', facts: {} });
  assert.equal(p.compatible, false);
  assert.equal(p.reasons[0]?.code, 'NodeFactsUnknown');
  assert.match(p.reasons[0]?.message ?? '', /\bc\b/);
});

test('pairMatrix: every ordered pair of distinct nodes, sorted, with overrides applied', () => {
  const m = pairMatrix([node('c', facts(), { kernelRelease: '5.10.0' }), node('a', facts()), node('b', facts())]);
  assert.deepEqual(m.map((p) => `${p.source}>${p.target}:${p.compatible}`), ['a>b:true', 'a>c:false', 'b>a:true', 'b>c:false', 'c>a:true', 'c>b:true']);
});
