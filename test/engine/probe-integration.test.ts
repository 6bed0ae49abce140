// The whole check (checkContainer) on real containers: migratable workloads, a preflight blocker that freezes
// nothing, allowing what CRIU can carry, and a container that does not exist.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { checkContainer } from '../../src/engine/probe.ts';
import type { ProbeDetail } from '../../src/engine/probe.ts';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';
import { testbed } from '../../testbed/index.ts';
import { startWorkload, watchStates } from './workloads.ts';
import { counter, counterAdvances, info, newSandboxTraces, sandboxTraces, taskStates, tempDir } from './engine-helpers.ts';

const options = { ...DEFAULT_PROBE_OPTIONS, timeoutMs: 60_000 };

void test('a sleeping shell with its own IP is migratable, with timings, sizes and CRIU versions', async (t) => {
  const tb = await testbed();
  const tracesBefore = await sandboxTraces();
  const c = await startWorkload(t, ['/bin/sh', '-c', 'touch /tmp/ready; while true; do sleep 0.05; done'], { ip: '10.77.5.2' });
  const work = await tempDir(t);
  const detail: ProbeDetail = {};
  const v = await checkContainer(
    { containerId: c.id, namespace: tb.containerd.namespace, containerdAddress: tb.containerd.address },
    options,
    {},
    { workDir: work, detail },
  );
  assert.equal(v.migratable, true, `${JSON.stringify(v.reasons)}\n${v.criuLogExcerpt ?? ''}`);
  for (const k of ['preflightMs', 'freezeMs', 'dumpMs', 'transferMs', 'restoreMs', 'totalMs'] as const) {
    assert.equal(typeof v.timings[k], 'number', k);
  }
  assert.ok((v.sizes.imageBytes ?? 0) > 0 && (v.sizes.shippedBytes ?? 0) > 0 && (v.sizes.workloadRssBytes ?? 0) > 0, JSON.stringify(v.sizes));
  assert.ok((v.sizes.shippedBytes ?? 0) < (v.sizes.imageBytes ?? 0), 'shipped compressed');
  assert.match(v.criu.source ?? '', /^4\./);
  assert.equal(v.criu.target, v.criu.source);
  assert.deepEqual(detail.restoreProof?.leftovers, []);
  assert.deepEqual(detail.restoreProof?.cpuTicksAfter, detail.restoreProof?.cpuTicksBefore);
  assert.deepEqual(await readdir(work), [], 'the work dir is emptied');
  assert.deepEqual(await newSandboxTraces(tracesBefore), []);
  const states = await taskStates((await info(c)).pids);
  assert.ok(!states.some((s) => s === 't' || s === 'T'), states.join(','));
});

void test('a 64 MiB workload is migratable while its memory is neither written nor shipped', async (t) => {
  await testbed();
  const tracesBefore = await sandboxTraces();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '64'], { ip: '10.77.5.3' });
  const before = await counter(c);
  const v = await checkContainer({ pid: c.pid }, options, {});
  assert.equal(v.migratable, true, `${JSON.stringify(v.reasons)}\n${v.criuLogExcerpt ?? ''}`);
  const rss = v.sizes.workloadRssBytes ?? 0;
  assert.ok(rss >= 64 * 1024 * 1024, `rss ${rss}`);
  assert.ok((v.sizes.imageBytes ?? Infinity) < rss / 100, `images ${v.sizes.imageBytes} vs rss ${rss}`);
  assert.ok((v.sizes.shippedBytes ?? Infinity) < rss / 1000, `shipped ${v.sizes.shippedBytes} vs rss ${rss}`);
  assert.deepEqual(await newSandboxTraces(tracesBefore), []);
  await counterAdvances(c, before + 1n);
});

void test('a preflight blocker stops the check before anything is frozen', async (t) => {
  await testbed();
  const c = await startWorkload(t, ['/usr/local/bin/flocker', 'flock']);
  const ci = await info(c);
  const w = await watchStates(ci.pids, async () => await checkContainer({ pid: c.pid }, options, {}));
  const v = w.result;
  assert.equal(v.migratable, false);
  assert.deepEqual(v.reasons.map((r) => `${r.phase}:${r.code}`), ['preflight:FileLocks']);
  assert.equal(v.timings.freezeMs, undefined, 'no dump ran');
  assert.equal(v.sizes.imageBytes, undefined);
  assert.ok(!w.states.has('t') && !w.states.has('T'), `states seen: ${[...w.states].join(',')}`);
  assert.ok(!w.freezer.has('FROZEN'));
  // Allowed, CRIU carries the lock and the whole check passes.
  const ok = await checkContainer({ pid: c.pid }, { ...options, fileLocks: true }, {});
  assert.equal(ok.migratable, true, `${JSON.stringify(ok.reasons)}\n${ok.criuLogExcerpt ?? ''}`);
});

void test('a container that does not exist is ContainerNotFound', async () => {
  await testbed();
  const v = await checkContainer({ containerId: 'no-such-container-xyz', containerdAddress: (await testbed()).containerd.address }, options, {});
  assert.equal(v.migratable, false);
  assert.deepEqual(v.reasons.map((r) => r.code), ['ContainerNotFound']);
});

void test('established TCP over the container IP restores when allowed: the sandbox carries that address', async (t) => {
  await testbed();
  const tracesBefore = await sandboxTraces();
  const c = await startWorkload(t, ['/usr/local/bin/tcpself', '10.77.5.9', '7100'], { ip: '10.77.5.9' });
  const blocked = await checkContainer({ pid: c.pid }, options, {});
  assert.equal(blocked.migratable, false);
  assert.ok(blocked.reasons.every((r) => r.code === 'TCPEstablished' && r.phase === 'preflight'), JSON.stringify(blocked.reasons));
  const detail: ProbeDetail = {};
  const v = await checkContainer({ pid: c.pid }, { ...options, tcpEstablished: true }, {}, { detail });
  assert.equal(v.migratable, true, `${JSON.stringify(v.reasons)}\n${v.criuLogExcerpt ?? ''}`);
  assert.deepEqual(detail.restoreProof?.leftovers, []);
  assert.deepEqual(await newSandboxTraces(tracesBefore), []);
  // CRIU's nftables network lock was released in the container's netns.
  const tables = execFileSync('nsenter', [`--net=/proc/${c.pid}/ns/net`, 'nft', 'list', 'tables'], { encoding: 'utf8' });
  assert.doesNotMatch(tables, /CRIU/);
  const states = await taskStates((await info(c)).pids);
  assert.ok(!states.some((s) => s === 't' || s === 'T'), states.join(','));
});
