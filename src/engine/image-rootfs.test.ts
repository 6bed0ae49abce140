import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chainIds, digestOfRef, imageLayers, lowerdirsFromMounts, nextStep, ociArch, parseImagesLs } from './image-rootfs.ts';
import type { RunResult, Runner } from './exec.ts';

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;
const C = `sha256:${'c'.repeat(64)}`;

void test('chain IDs follow the OCI image spec', () => {
  assert.deepEqual(chainIds([A]), [A]);
  assert.deepEqual(chainIds([A, B, C]), [
    A,
    'sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c',
    'sha256:c1377126441fb2f5ec2c21ae2a60255331d639e830f0ee1b40a36e52d4c40588',
  ]);
  assert.throws(() => chainIds(['sha256:xyz']), /invalid diff ID/);
});

void test('ctr images ls: ref -> target digest, whatever the size column holds', () => {
  const out = [
    'REF                                TYPE                                       DIGEST    SIZE     PLATFORMS   LABELS ',
    `migprobe.test/testbed:53d0266845ff application/vnd.oci.image.manifest.v1+json ${A} 10.8 MiB linux/amd64 -      `,
    `docker.io/library/busybox:1.36 application/vnd.oci.image.index.v1+json ${B} 2.1 MiB linux/amd64,linux/arm64 io.cri-containerd.image=managed`,
    '',
  ].join('\n');
  assert.deepEqual([...parseImagesLs(out)], [
    ['migprobe.test/testbed:53d0266845ff', A],
    ['docker.io/library/busybox:1.36', B],
  ]);
  assert.equal(ociArch('x64'), 'amd64');
  assert.equal(ociArch('arm64'), 'arm64');
});

void test('index -> manifest -> config, by the blob shape', () => {
  const index = {
    manifests: [
      { digest: B, platform: { os: 'linux', architecture: 'arm64' } },
      { digest: C, platform: { os: 'linux', architecture: 'amd64' } },
    ],
  };
  assert.deepEqual(nextStep(index, 'amd64'), { kind: 'index', digest: C });
  assert.throws(() => nextStep(index, 's390x'), /no manifest for linux\/s390x/);
  assert.deepEqual(nextStep({ manifests: [{ digest: B }] }, 's390x'), { kind: 'index', digest: B });
  assert.deepEqual(nextStep({ config: { digest: A }, layers: [] }, 'amd64'), { kind: 'manifest', digest: A });
  assert.deepEqual(nextStep({ rootfs: { type: 'layers', diff_ids: [A, B] } }, 'amd64'), { kind: 'config', diffIds: [A, B] });
  assert.throws(() => nextStep({ hello: 1 }, 'amd64'), /neither an image index/);
  assert.throws(() => nextStep({ config: { digest: '--x' } }, 'amd64'), /invalid config digest/);
});

void test('view mounts -> lower dirs, top first (bind for one layer, overlay for more)', () => {
  assert.deepEqual(lowerdirsFromMounts(JSON.stringify([{ Type: 'bind', Source: '/c/snapshots/1/fs', Options: ['ro', 'rbind'] }])), ['/c/snapshots/1/fs']);
  assert.deepEqual(
    lowerdirsFromMounts(JSON.stringify([{ Type: 'overlay', Source: 'overlay', Target: '', Options: ['index=off', 'lowerdir=/c/3/fs:/c/2/fs:/c/1/fs'] }])),
    ['/c/3/fs', '/c/2/fs', '/c/1/fs'],
  );
  assert.throws(() => lowerdirsFromMounts(JSON.stringify([{ Type: 'overlay', Options: ['lowerdir=/a', 'upperdir=/u'] }])), /writable/);
  assert.throws(() => lowerdirsFromMounts(JSON.stringify([{ Type: 'erofs', Source: '/x' }])), /'erofs' mount/);
  assert.throws(() => lowerdirsFromMounts(JSON.stringify([{ Type: 'bind', Source: 'rel/fs' }])), /relative/);
  assert.throws(() => lowerdirsFromMounts('mount -t bind /a /b'), /no mount list/);
  assert.equal(digestOfRef(A), A);
  assert.equal(digestOfRef(`reg/x@${B}`), B);
  assert.equal(digestOfRef('reg/x:1'), undefined);
});

const result = (r: Partial<RunResult>): RunResult => ({ exitCode: 0, signal: null, stdout: '', stderr: '', timedOut: false, durationMs: 1, ...r });

/** A fake ctr answering by subcommand, recording every call; the socket counts as there. */
function fakeCtr(answers: (args: readonly string[]) => Partial<RunResult>): { deps: { runner: Runner; socketProblem: () => undefined }; calls: string[][] } {
  const calls: string[][] = [];
  const runner: Runner = (_cmd, args) => {
    const rest = args.slice(6); // after --address A --namespace N --connect-timeout T
    calls.push([...rest]);
    return Promise.resolve(result(answers(rest)));
  };
  return { calls, deps: { runner, socketProblem: () => undefined } };
}

void test('imageLayers: image -> manifest -> config -> chain ID -> view, and the view is removed whatever happens', async () => {
  const ep = { address: '/run/c.sock', namespace: 'k8s.io' };
  const chain = chainIds([A, B]).at(-1) ?? '';
  const answers = (view: Partial<RunResult>) => (args: readonly string[]): Partial<RunResult> => {
    if (args[0] === 'images') return { stdout: `REF TYPE DIGEST SIZE\nreg/app:1 application/vnd.oci.image.manifest.v1+json ${C} 1 MiB\n` };
    if (args[0] === 'content' && args[2] === C) return { stdout: JSON.stringify({ config: { digest: A } }) };
    if (args[0] === 'content' && args[2] === A) return { stdout: JSON.stringify({ rootfs: { diff_ids: [A, B] } }) };
    if (args[0] === 'snapshots' && args[1] === 'view') return view;
    if (args[0] === 'snapshots' && args[1] === 'rm') return {};
    return { exitCode: 1, stderr: `unexpected ${args.join(' ')}` };
  };
  const good = fakeCtr(answers({ stdout: JSON.stringify([{ Type: 'overlay', Options: ['lowerdir=/l/2:/l/1'] }]) }));
  const got = await imageLayers('reg/app:1', ep, good.deps, () => true);
  assert.deepEqual(got.lowerdirs, ['/l/2', '/l/1']);
  assert.equal(got.chainId, chain);
  const view = good.calls.find((c) => c[1] === 'view') ?? [];
  assert.deepEqual(view.slice(0, 3), ['snapshots', 'view', '--mounts']);
  assert.match(view[3] ?? '', /^migprobe-rootfs-view-[0-9a-f]{12}$/);
  assert.equal(view[4], chain);
  assert.deepEqual(good.calls.at(-1), ['snapshots', 'rm', view[3]]);

  // Not unpacked: a clear error, and the (failed) view is still removed.
  const notUnpacked = fakeCtr(answers({ exitCode: 1, stderr: `ctr: parent snapshot ${chain} does not exist: not found` }));
  await assert.rejects(imageLayers('reg/app:1', ep, notUnpacked.deps), /layers of image reg\/app:1 are not unpacked/);
  assert.deepEqual(notUnpacked.calls.at(-1)?.slice(0, 2), ['snapshots', 'rm']);
  // Directories this process cannot see: said, and removed.
  const hidden = fakeCtr(answers({ stdout: JSON.stringify([{ Type: 'bind', Source: '/elsewhere/fs' }]) }));
  await assert.rejects(imageLayers('reg/app:1', ep, hidden.deps, () => false), /not visible here \(\/elsewhere\/fs\)/);
  assert.deepEqual(hidden.calls.at(-1)?.slice(0, 2), ['snapshots', 'rm']);
  // A view that timed out may exist: removed too.
  const slow = fakeCtr(answers({ exitCode: null, timedOut: true }));
  await assert.rejects(imageLayers('reg/app:1', ep, slow.deps), /did not answer `ctr snapshots view` within 10 s/);
  assert.deepEqual(slow.calls.at(-1)?.slice(0, 2), ['snapshots', 'rm']);
  // An image this containerd does not have.
  const none = fakeCtr(answers({}));
  await assert.rejects(imageLayers('reg/other:2', ep, none.deps), /the image reg\/other:2 is not in containerd namespace k8s.io/);
  // An option-like ref never reaches ctr.
  const evil = fakeCtr(answers({}));
  await assert.rejects(imageLayers('--address=/etc', ep, evil.deps), /not a valid containerd name/);
  assert.deepEqual(evil.calls, []);
});
