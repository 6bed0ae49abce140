// CRIU's images from a real dump, read through the generated schema: every file of the dump is either a raw
// image or decodes (and re-encodes to the same bytes), and the typed readers give what the workload has:
// inventory, process tree, cores, memory, files and descriptors, unix and TCP sockets, TCP queues, cgroups.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { sourceDumpCheck } from '../../src/engine/probe.ts';
import { networkLockFor } from '../../src/engine/criu-args.ts';
import {
  KIND,
  encodeImage,
  kindOf,
  messagesOf,
  readCore,
  readFdinfo,
  readFiles,
  readImageDir,
  readInventory,
  readMm,
  readPstree,
  readSockets,
} from '../../src/engine/images.ts';
import { readCgroupProps } from '../../src/engine/cgroup-image.ts';
import { fd_types, fd_typesSchema } from '../../src/engine/criu-pb/fdinfo_pb.ts';
import { lsmtype } from '../../src/engine/criu-pb/inventory_pb.ts';
import { tcp_stream_entrySchema } from '../../src/engine/criu-pb/tcp-stream_pb.ts';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';
import { testbed } from '../../testbed/index.ts';
import { startWorkload } from './workloads.ts';
import { tempDir } from './engine-helpers.ts';

/** Files CRIU writes without a magic (criu/image-desc.c: RAW_IMAGE_MAGIC), and what is not an image at all. */
const RAW = /^(pages-\d+\.img|tmpfs-(dev-)?\d+\.tar\.gz\.img|(ifaddr|route6?|rule|iptables|ip6tables|nftables|netns-ct|netns-exp)-\d+\.img|.*\.(log|json))$/;

const BIN = '/usr/local/bin';
// A unix listener and a connected client, a TCP pair on loopback, a pipe into cat; then the ready file.
const SCRIPT = [
  `${BIN}/unixpeer /tmp/s stream serve &`,
  `${BIN}/unixpeer /tmp/s stream connect &`,
  `${BIN}/tcppair 7120 | cat &`,
  'sleep 1; touch /tmp/all-ready; wait',
].join('\n');

void test('a real dump decodes through CRIU’s schema: every image kind, inventory, core, mm, files, fdinfo, sockets, cgroup', async (t) => {
  const tb = await testbed();
  const c = await startWorkload(t, ['/bin/sh', '-c', SCRIPT], { readyFile: '/tmp/all-ready' });
  const work = await tempDir(t);
  const options = { ...DEFAULT_PROBE_OPTIONS, timeoutMs: 30_000, tcpEstablished: true };
  const src = await sourceDumpCheck({ containerId: c.id, namespace: tb.containerd.namespace, containerdAddress: tb.containerd.address }, options, work);
  assert.deepEqual(src.reasons, [], JSON.stringify(src.reasons));
  assert.ok(src.bundleDir !== undefined);
  const dir = join(src.bundleDir, 'images');

  // Every file: raw, or a known kind that decodes and re-encodes byte for byte.
  const images = await readImageDir(dir);
  for (const name of await readdir(dir)) {
    const buf = await readFile(join(dir, name));
    const img = images.get(name);
    if (img === undefined) {
      assert.match(name, RAW, `${name}: neither a raw image nor a kind in src/engine/image-kinds.ts (magic ${buf.subarray(0, 8).toString('hex')})`);
      assert.equal(kindOf(buf), undefined);
      continue;
    }
    assert.deepEqual(encodeImage(img), buf, `${name} (${img.kind.name}) re-encodes to the same bytes`);
  }
  const kinds = new Set([...images.values()].map((i) => i.kind.name));
  for (const k of ['INVENTORY', 'PSTREE', 'CORE', 'MM', 'PAGEMAP', 'FILES', 'FDINFO', 'CGROUP', 'TCP_STREAM', 'MNTS', 'NETNS', 'STATS']) {
    assert.ok(kinds.has(k), `a ${k} image among ${[...kinds].join(' ')}`);
  }
  t.diagnostic(`${images.size} protobuf images of ${kinds.size} kinds: ${[...kinds].sort().join(' ')}`);

  const inv = await readInventory(dir);
  assert.equal(inv.imgVersion, 2);
  assert.ok(Object.values(lsmtype).includes(inv.lsmtype), `lsmtype ${inv.lsmtype}`);
  // CRIU's enum NETWORK_LOCK_METHOD: iptables 0, nftables 1, skip 2.
  assert.equal(inv.networkLockMethod, networkLockFor(options) === 'nftables' ? 1 : 2);
  assert.equal(inv.allowUprobes, false);
  assert.ok(Array.isArray(inv.pluginsEntry?.plugins ?? []));

  const tree = await readPstree(dir);
  const comms = new Map<number, string>();
  for (const p of tree) comms.set(p.pid, (await readCore(dir, p.pid)).tc?.comm ?? '');
  assert.deepEqual([...new Set(comms.values())].sort(), ['cat', 'sh', 'tcppair', 'unixpeer'], JSON.stringify([...comms]));
  const pidOf = (comm: string): number => [...comms].find(([, n]) => n === comm)?.[0] ?? -1;

  const files = await readFiles(dir);
  const byId = new Map(files.map((f) => [f.id, f]));
  const mm = await readMm(dir, pidOf('tcppair'));
  assert.ok(mm.vmas.length > 3, `${mm.vmas.length} VMAs`);
  assert.ok(mm.mmStartStack > 0n && mm.mmBrk >= mm.mmStartBrk);
  assert.equal(byId.get(mm.exeFileId)?.reg?.name, '/usr/local/bin/tcppair');

  const fdTypes = async (comm: string): Promise<string[]> =>
    (await readFdinfo(dir, pidOf(comm))).filter((f) => f.fd > 2).map((f) => `${f.fd}:${fd_typesSchema.value[f.type]?.name ?? f.type}`);
  assert.deepEqual(await fdTypes('tcppair'), ['3:INETSK', '4:INETSK', '5:INETSK']);
  assert.deepEqual((await readFdinfo(dir, pidOf('cat'))).find((f) => f.fd === 0)?.type, fd_types.PIPE);
  for (const f of await readFdinfo(dir, pidOf('tcppair'))) assert.ok(byId.has(f.id), `fd ${f.fd}'s file ${f.id} is in files.img`);

  const socks = await readSockets(dir);
  // CRIU keeps sun_path as the kernel gives it, with its NUL: the listener and the accepted end carry the bound
  // name, the client (never bound) none.
  const unixNames = socks.unix.map((s) => Buffer.from(s.name).toString()).sort();
  assert.deepEqual(unixNames, ['', '/tmp/s\0', '/tmp/s\0'], 'client; listener and accepted end');
  // TCP: the listener (state 10, LISTEN) and both ends of the connection (1, ESTABLISHED) on port 7120.
  const tcp = socks.inet.filter((s) => s.srcPort === 7120 || s.dstPort === 7120).map((s) => s.state).sort();
  assert.deepEqual(tcp, [1, 1, 10], JSON.stringify(socks.inet.map((s) => [s.srcPort, s.dstPort, s.state])));

  // The TCP queues follow each tcp-stream entry as raw data of the lengths the entry gives.
  for (const [name, img] of images) {
    if (img.kind !== KIND.tcpStream) continue;
    const [e] = messagesOf(img, tcp_stream_entrySchema);
    assert.equal(img.entries[0]?.payload?.length ?? 0, (e?.inqLen ?? -1) + (e?.outqLen ?? 0), name);
  }

  const cg = await readCgroupProps(dir);
  const cgImg = [...images.values()].find((i) => i.kind === KIND.cgroup);
  assert.ok(cgImg !== undefined && cgImg.entries.length === 1);
  t.diagnostic(`cgroup.img: ${cg.length} properties of ${new Set(cg.flatMap((p) => p.controllers)).size} controllers`);
});
