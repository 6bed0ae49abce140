import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NodeFacts } from './api.ts';
import { compareFacts, memoryNeeded } from './compat.ts';

const GiB = 1024 * 1024 * 1024;

function facts(over: Partial<NodeFacts> = {}): NodeFacts {
  return {
    hostname: 'a',
    arch: 'x86_64',
    kernelRelease: '6.18.0-1-amd64',
    criuVersion: '4.2.1',
    criuFeatures: { timens: true, uffd: true, pagemap_scan: true, clone3_set_tid: true },
    memAvailableBytes: 4 * GiB,
    cpu: { vendor: 'GenuineIntel', model: 'Xeon', flags: ['fpu', 'sse2', 'avx2', 'hypervisor', 'constant_tsc'] },
    ...over,
  };
}

const codes = (rs: { code: string }[]): string[] => rs.map((r) => r.code);

void test('identical nodes are compatible', () => {
  assert.deepEqual(compareFacts(facts(), facts({ hostname: 'b' }), 100 * 1024 * 1024), []);
});

void test('architecture mismatch', () => {
  const r = compareFacts(facts(), facts({ hostname: 'b', arch: 'aarch64' }), 0);
  assert.deepEqual(codes(r), ['ArchMismatch']);
  assert.match(r[0]?.message ?? '', /x86_64.*aarch64/);
  assert.equal(r[0]?.phase, 'compat');
});

void test('CRIU too old on either side', () => {
  const r = compareFacts(facts({ criuVersion: '3.17.1' }), facts({ hostname: 'b', criuVersion: '4.1.1' }), 0);
  assert.deepEqual(codes(r), ['CRIUTooOld', 'CRIUTooOld']);
  assert.match(r[0]?.message ?? '', /3\.17\.1/);
  assert.match(r[1]?.message ?? '', /target b.*4\.1\.1/);
});

void test('kernel feature present on source and missing on target; dump-only features ignored', () => {
  const r = compareFacts(
    facts(),
    facts({ hostname: 'b', criuFeatures: { timens: false, uffd: true, pagemap_scan: false, clone3_set_tid: true } }),
    0,
  );
  assert.deepEqual(codes(r), ['KernelFeatureMissing']);
  assert.match(r[0]?.message ?? '', /timens/);
  assert.doesNotMatch(r[0]?.message ?? '', /pagemap_scan/);
  // a feature only the target has is fine
  assert.deepEqual(compareFacts(facts({ criuFeatures: {} }), facts(), 0), []);
});

void test('kernel: only a downgrade of major.minor is a mismatch', () => {
  assert.deepEqual(codes(compareFacts(facts(), facts({ kernelRelease: '6.12.4-cloud' }), 0)), ['KernelMismatch']);
  assert.deepEqual(codes(compareFacts(facts(), facts({ kernelRelease: '5.19.0' }), 0)), ['KernelMismatch']);
  assert.deepEqual(compareFacts(facts(), facts({ kernelRelease: '6.18.9' }), 0), []);
  assert.deepEqual(compareFacts(facts(), facts({ kernelRelease: '7.0.0' }), 0), []);
  assert.deepEqual(compareFacts(facts({ kernelRelease: '6.18.5' }), facts({ kernelRelease: '6.18.1' }), 0), []);
});

void test('memory: MemAvailable against RSS plus margin', () => {
  const rss = 1 * GiB;
  const need = memoryNeeded(rss);
  assert.ok(need > rss);
  assert.deepEqual(compareFacts(facts(), facts({ memAvailableBytes: need }), rss), []);
  const r = compareFacts(facts(), facts({ memAvailableBytes: need - 1 }), rss);
  assert.deepEqual(codes(r), ['InsufficientMemory']);
  assert.match(r[0]?.message ?? '', /1024\.0 MiB resident/);
});

void test('CPU: source ISA flags must be a subset of the target, non-ISA flags ignored', () => {
  const r = compareFacts(
    facts(),
    facts({ cpu: { vendor: 'GenuineIntel', model: 'Old', flags: ['fpu', 'sse2'] } }),
    0,
  );
  assert.deepEqual(codes(r), ['CPUIncompatible']);
  assert.match(r[0]?.message ?? '', /avx2/);
  assert.doesNotMatch(r[0]?.message ?? '', /hypervisor|constant_tsc/);
  assert.deepEqual(
    compareFacts(facts(), facts({ cpu: { vendor: 'AuthenticAMD', model: 'Epyc', flags: ['fpu', 'sse2', 'avx2', 'avx512f'] } }), 0),
    [],
  );
});

void test('all blockers at once', () => {
  const r = compareFacts(
    facts(),
    facts({ arch: 'aarch64', criuVersion: '4.0', kernelRelease: '5.10', memAvailableBytes: 0, criuFeatures: {}, cpu: { vendor: '', model: '', flags: [] } }),
    10,
  );
  assert.deepEqual(codes(r).sort(), ['ArchMismatch', 'CPUIncompatible', 'CRIUTooOld', 'InsufficientMemory', 'KernelFeatureMissing', 'KernelMismatch']);
});
