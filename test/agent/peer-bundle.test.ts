// A malicious peer (issue 10): crafted bundles POSTed to a target agent that runs the real engine (CRIU,
// containerd and the restore sandbox of the test bed). Each is refused with a 400 BundleRefused naming the member
// or manifest field and a hint, and leaves nothing on the node: the agent's work root is empty and no sandbox
// trace (netns, cgroup, mount, folder) is left. A real bundle from a real dump, packed as the source agent packs
// it, still passes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { execa } from 'execa';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';
import { sourceDumpCheck } from '../../src/engine/probe.ts';
import { AgentClient, AgentHttpError } from '../../src/agent-api/client.ts';
import type { RestoreCheckRequest } from '../../src/agent-api/protocol.ts';
import { startBedAgent } from './agent-bed.ts';
import { testbed } from '../../testbed/index.ts';
import { newSandboxTraces, sandboxTraces } from '../engine/engine-helpers.ts';
import { startWorkload } from '../engine/workloads.ts';
import { gzTarOf, shippedManifest, tarOf, type CraftedMember } from './crafted-bundle.ts';

const options = { ...DEFAULT_PROBE_OPTIONS, timeoutMs: 30_000 };
const MAX_UNPACKED = 8 * 1024 * 1024;

interface Target {
  workRoot: string;
  scratch: string;
  post(gz: Buffer, restoreOnlyArchive?: string): Promise<unknown>;
}

/**
 * A target agent wired as main.ts wires it (agent-bed.ts: real TokenReview, the real engine) with small caps,
 * called as a peer with a real ServiceAccount token; the claimed source pod is on node-a.
 */
async function targetAgent(t: TestContext): Promise<Target> {
  const a = await startBedAgent(t, {
    config: { maxUnpackedBytes: MAX_UNPACKED, maxBundleEntries: 1000 },
    pods: () => async (ns, name) => (ns === 'ns' && name === 'web' ? { nodeName: 'node-a', containerIds: {}, containerNames: ['app'] } : undefined),
  });
  const scratch = await mkdtemp(join(a.tb.stateDir, 'peer-bundle-'));
  t.after(() => rm(scratch, { recursive: true, force: true }));
  const peer = new AgentClient({ tokens: { token: async () => await a.token() } });
  const rreq: RestoreCheckRequest = { namespace: 'ns', podName: 'web', sourceNodeName: 'node-a', options };
  const post = async (gz: Buffer, restoreOnlyArchive?: string): Promise<unknown> => {
    const path = join(scratch, `upload-${randomUUID()}.tar.gz`);
    await writeFile(path, gz);
    const r: RestoreCheckRequest = restoreOnlyArchive === undefined ? rreq : { ...rreq, restoreOnly: { kind: 'archive', name: restoreOnlyArchive } };
    try {
      return await peer.restoreCheck(a.url, randomUUID(), r, { path, sha256: createHash('sha256').update(gz).digest('hex') }, 60_000);
    } finally {
      await rm(path, { force: true });
    }
  };
  return { workRoot: a.workRoot, scratch, post };
}

/** POSTs `gz`, expects 400 BundleRefused matching `why` with a hint in parentheses, and nothing left behind. */
async function expectRefused(tg: Target, before: readonly string[], gz: Buffer, why: RegExp, restoreOnlyArchive?: string): Promise<void> {
  await assert.rejects(tg.post(gz, restoreOnlyArchive), (e: unknown) => {
    assert.ok(e instanceof AgentHttpError, String(e));
    assert.equal(e.status, 400, e.message);
    assert.equal(e.body?.code, 'BundleRefused', e.message);
    assert.match(e.body?.message ?? '', why);
    assert.match(e.body?.message ?? '', /\(.{20,}\)$/, 'a hint follows the reason');
    return true;
  });
  assert.deepEqual(await readdir(tg.workRoot), [], 'the work root is empty again');
  assert.deepEqual(await newSandboxTraces(before), [], 'no sandbox traces');
}

const manifestMember = (over: Record<string, unknown> = {}): CraftedMember => ({ path: './manifest.json', body: JSON.stringify(shippedManifest(over)) });
const base: CraftedMember[] = [{ path: './', type: 'Directory' }, { path: './images/', type: 'Directory' }, { path: './images/inventory.img', body: 'x' }];

void test('a malicious peer: crafted members are refused while streaming, and nothing is left on the node', async (t) => {
  const tg = await targetAgent(t);
  const before = await sandboxTraces();
  const cases: [string, CraftedMember[], RegExp][] = [
    ['.. member', [...base, { path: './images/../../../escaped-by-dotdot', body: 'x' }, manifestMember()], /member "\.\/images\/\.\.\/\.\.\/\.\.\/escaped-by-dotdot" has a '\.\.' in its path/],
    ['absolute member', [...base, { path: '/etc/cron.d/migprobe-escaped', body: 'x' }, manifestMember()], /member "\/etc\/cron\.d\/migprobe-escaped" has an absolute path/],
    ['symlinked folder', [{ path: './', type: 'Directory' }, { path: './images', type: 'SymbolicLink', linkpath: '/etc' }, { path: './images/escaped', body: 'x' }], /member "\.\/images" is a symbolic link/],
    ['symlinked manifest.json', [...base, { path: './manifest.json', type: 'SymbolicLink', linkpath: '/etc/shadow' }], /member "\.\/manifest\.json" is a symbolic link/],
    ['character device', [...base, { path: './images/mem', type: 'CharacterDevice', devmaj: 1, devmin: 1 }, manifestMember()], /member "\.\/images\/mem" is a character device node/],
    ['block device', [...base, { path: './images/sda', type: 'BlockDevice', devmaj: 8, devmin: 0 }, manifestMember()], /member "\.\/images\/sda" is a block device node/],
    ['FIFO', [...base, { path: './images/fifo', type: 'FIFO' }, manifestMember()], /member "\.\/images\/fifo" is a FIFO/],
    ['hard link', [...base, { path: './images/shadow', type: 'Link', linkpath: '/etc/shadow' }, manifestMember()], /member "\.\/images\/shadow" is a hard link/],
  ];
  for (const [what, members, why] of cases) {
    await t.test(what, async () => {
      await expectRefused(tg, before, gzTarOf(members).gz, why);
    });
  }
  // Nothing escaped either.
  await assert.rejects(readFile('/etc/cron.d/migprobe-escaped'));
  await assert.rejects(readFile(join(tg.scratch, '..', 'escaped-by-dotdot')));
});

void test('a malicious peer: gzip bombs are refused while inflating, before they reach the disk', async (t) => {
  const tg = await targetAgent(t);
  const before = await sandboxTraces();
  // One member that claims 64 MiB (of zeros: 64 KiB compressed), against an 8 MiB cap: refused at its header.
  const big = gzTarOf([...base, { path: './images/pages-1.img', body: Buffer.alloc(64 * 1024 * 1024) }]).gz;
  assert.ok(big.length < 256 * 1024, `${big.length} bytes on the wire`);
  await expectRefused(tg, before, big, /member "\.\/images\/pages-1\.img" of 67108864 bytes takes the bundle past 8388608 unpacked bytes \(raise migprobe-agent --max-unpacked-bytes/);
  // Many small members: past the entry cap (1000 here).
  const many = gzTarOf([...base, ...Array.from({ length: 1001 }, (_, i) => ({ path: `./images/f${i}`, body: 'x' }))]).gz;
  await expectRefused(tg, before, many, /more than 1000 members \(raise migprobe-agent --max-bundle-entries/);
});

void test('a malicious peer: option-like strings and host paths in the manifest are refused by field', async (t) => {
  const tg = await targetAgent(t);
  const before = await sandboxTraces();
  const withManifest = (over: Record<string, unknown>): Buffer => gzTarOf([...base, manifestMember(over)]).gz;
  await expectRefused(tg, before, withManifest({ imageRef: '-xattach-to=/etc' }), /manifest\.json: imageRef "-xattach-to=\/etc" is not an image reference/);
  await expectRefused(tg, before, withManifest({ addresses: [{ ifname: 'eth0', cidr: '-xforce' }] }), /manifest\.json: addresses\[0\]\.cidr "-xforce" is not an address\/prefix/);
  await expectRefused(tg, before, withManifest({ addresses: [{ ifname: 'eth0', cidr: '10.0.0.1/24 dev lo' }] }), /manifest\.json: addresses\[0\]\.cidr "10\.0\.0\.1\/24 dev lo" is not an IPv4 or IPv6 address/);
  await expectRefused(tg, before, withManifest({ externalMounts: [{ mountpoint: '/data', key: 'bind-data', kind: 'bind', hostPath: '/etc' }] }), /manifest\.json: externalMounts\[0\]\.hostPath names a host path/);
  await expectRefused(tg, before, withManifest({ rootfs: { lowerdirs: ['/'] } }), /manifest\.json: rootfs\.lowerdirs\[0\] names a host path/);
  await expectRefused(tg, before, withManifest({ rootfs: { lowerdirs: [], upperdir: '/root' } }), /manifest\.json: rootfs\.upperdir names a host path/);
  await expectRefused(tg, before, withManifest({ fileDigests: [{ path: '../../../etc/shadow', sha256: 'a'.repeat(64), size: 1 }] }), /manifest\.json: fileDigests\[0\]\.path "\.\.\/\.\.\/\.\.\/etc\/shadow" is not a plain path/);
  await expectRefused(tg, before, withManifest({ externalMounts: [{ mountpoint: '/x', key: 'x]:/etc', kind: 'bind' }] }), /manifest\.json: externalMounts\[0\]\.key "x\]:\/etc" is not a mount key/);
  await expectRefused(tg, before, withManifest({ mounts: [] }), /manifest\.json: manifest\.mounts is not a manifest field/);
  // A device node inside the shipped writable layer (a tar in the bundle) is refused before GNU tar sees it.
  const diff = tarOf([{ path: './', type: 'Directory' }, { path: './dev', type: 'SymbolicLink', linkpath: '/dev' }, { path: './dev/sda', body: 'x' }]);
  await expectRefused(tg, before, gzTarOf([...base, manifestMember({ rootfsDiff: { bytes: diff.length } }), { path: './rootfs-diff.tar', body: diff }]).gz, /rootfs-diff\.tar: member "\.\/dev\/sda" lies below a symbolic link/);
});

void test('a malicious peer: a RestoreOnly checkpoint archive with a link or a device in its writable layer is refused', async (t) => {
  const tg = await targetAgent(t);
  const before = await sandboxTraces();
  const ship = (archive: Buffer): Buffer => gzTarOf([{ path: './', type: 'Directory' }, { path: './checkpoint.tar', body: archive }]).gz;
  const linked = tarOf([{ path: 'checkpoint/', type: 'Directory' }, { path: 'checkpoint/inventory.img', type: 'SymbolicLink', linkpath: '/etc/shadow' }]);
  await expectRefused(tg, before, ship(linked), /checkpoint archive checkpoint\.tar: member "checkpoint\/inventory\.img" is a symbolic link/, 'checkpoint.tar');
  const diff = tarOf([{ path: 'etc', type: 'SymbolicLink', linkpath: '/etc' }, { path: 'etc/cron.d/x', body: 'x' }]);
  const withDiff = tarOf([{ path: 'checkpoint/', type: 'Directory' }, { path: 'checkpoint/inventory.img', body: 'x' }, { path: 'rootfs-diff.tar', body: diff }]);
  await expectRefused(tg, before, ship(withDiff), /checkpoint\.tar: rootfs-diff\.tar: member "etc\/cron\.d\/x" lies below a symbolic link/, 'checkpoint.tar');
});

void test('a real bundle, packed as the source agent packs it, passes the same gate and leaves nothing', async (t) => {
  const tb = await testbed();
  const tg = await targetAgent(t);
  const before = await sandboxTraces();
  const c = await startWorkload(t, ['/usr/local/bin/memhog', '1']);
  const src = await sourceDumpCheck({ containerId: c.id, namespace: tb.containerd.namespace, containerdAddress: tb.containerd.address }, options, join(tg.scratch, 'src'));
  assert.deepEqual(src.reasons, []);
  assert.ok(src.bundleDir !== undefined);
  const shipped = JSON.parse(await readFile(join(src.bundleDir, 'manifest.json'), 'utf8')) as { rootfs: unknown; externalMounts: { hostPath?: string }[] };
  assert.deepEqual(shipped.rootfs, { lowerdirs: [] }, 'no overlay path leaves the source');
  assert.ok(shipped.externalMounts.every((m) => m.hostPath === undefined), 'no bind mount source leaves the source');
  const archive = join(tg.scratch, 'bundle.tar.gz');
  await execa('tar', ['-C', src.bundleDir, '-czf', archive, '.']);
  const r = (await tg.post(await readFile(archive))) as { reasons: { code: string }[] };
  assert.deepEqual(r.reasons, [], JSON.stringify(r));
  assert.deepEqual(await readdir(tg.workRoot), []);
  assert.deepEqual(await newSandboxTraces(before), []);
});
