// The container images, built for real: hack/images.sh builds both Dockerfiles with buildah on a locally
// made base (no Docker engine, no registry; cached by content, so this is seconds after the first build),
// then each OCI archive is imported into the test bed's containerd and run there. Beside that, the parts
// of the build that run on the host: the TypeScript build the images run, the script that picks CRIU's
// runtime libraries, the agent's start-up CRIU version check, and that the Dockerfiles agree with the
// chart and with the pinned versions in hack/lib.sh.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { testbed, type Testbed } from '../../testbed/index.ts';
import { ctr, ctrArgs, removeContainer } from '../../testbed/containerd.ts';
import { run, type RunResult } from '../../testbed/proc.ts';
import { CHART_DIR, ROOT } from './lib.ts';

const ENTRYPOINT = join(ROOT, 'hack', 'image', 'agent-entrypoint.sh');
const RUNTIME_PKGS = join(ROOT, 'hack', 'image', 'criu-runtime-packages.sh');

function dockerfile(name: string): string {
  return readFileSync(join(ROOT, name), 'utf8');
}

function libVar(name: string): string {
  const m = new RegExp(`^export ${name}=(\\S+)`, 'm').exec(readFileSync(join(ROOT, 'hack', 'lib.sh'), 'utf8'));
  if (!m?.[1]) throw new Error(`hack/lib.sh does not pin ${name}`);
  return m[1];
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

test('the build the images run (npm run build) compiles, and dist/ has both entry points without .ts imports', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'migprobe-dist-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const res = await run(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', out], { allowFail: true, timeoutMs: 300_000 });
  assert.equal(res.exitCode, 0, `npm run build would fail, so would both image builds:\n${res.stdout.slice(0, 4000)}`);
  for (const entry of ['controller/main.js', 'agent/main.js']) assert.ok(existsSync(join(out, entry)), `dist/${entry} is built`);
  // tsc rewrites `.ts` in static import specifiers only: a `.ts` path left in dist/ fails at run time.
  const leftovers: string[] = [];
  for (const f of walk(out).filter((p) => p.endsWith('.js'))) {
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/['"](\.{1,2}\/[^'"\n]+\.ts)['"]/g)) leftovers.push(`${relative(out, f)}: ${m[1]}`);
  }
  assert.deepEqual(leftovers, [], 'relative .ts paths survive in dist/ (use static imports so tsc rewrites them)');
});

test('criu-runtime-packages.sh names the Debian packages of the libraries the real CRIU links against', async () => {
  const tb = await testbed();
  const res = await run('sh', [RUNTIME_PKGS, tb.criu]);
  const pkgs = res.stdout.split('\n').filter(Boolean);
  for (const want of ['libc6', 'libprotobuf-c1', 'libnl-3-200', 'libnet1', 'libnftables1', 'libbsd0']) {
    assert.ok(pkgs.includes(want), `${want} in ${pkgs.join(' ')}`);
  }
  for (const p of pkgs) {
    const st = await run('dpkg-query', ['-W', '-f', '${Status}', p]);
    assert.equal(st.stdout, 'install ok installed', `${p} is an installed package`);
  }
  const bad = await run('sh', [RUNTIME_PKGS, '/nonexistent'], { allowFail: true });
  assert.notEqual(bad.exitCode, 0);
});

test('criu-runtime-packages.sh fails when no Debian package holds a library the binary links against', async (t) => {
  // A copy of libc outside every package, found first through LD_LIBRARY_PATH.
  const dir = mkdtempSync(join(tmpdir(), 'migprobe-libs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const libc = (await run('sh', ['-c', 'ldd /bin/true | awk \'$1 ~ /^libc\\.so/ { print $3 }\''])).stdout;
  assert.match(libc, /^\//, 'ldd names the host libc');
  copyFileSync(libc, join(dir, 'libc.so.6'));
  const res = await run('sh', [RUNTIME_PKGS, '/bin/true'], { env: { LD_LIBRARY_PATH: dir }, allowFail: true });
  assert.equal(res.exitCode, 1, `exit 1, got ${res.exitCode}: ${res.stdout}`);
  assert.match(res.stderr, /no Debian package holds .*libc\.so\.6/);
});

test("the agent image's entry point checks the real CRIU's version, refuses an old one, then runs the agent", async (t) => {
  const tb = await testbed();
  const dir = mkdtempSync(join(tmpdir(), 'migprobe-entry-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const main = join(dir, 'main.mjs');
  writeFileSync(main, 'console.log(JSON.stringify(process.argv.slice(2)));\n');
  const env = { MIGPROBE_CRIU: tb.criu, MIGPROBE_AGENT_MAIN: main };

  const ok = await run('sh', [ENTRYPOINT, '--node-name=n1', '--listen=0.0.0.0:9443'], { env });
  assert.deepEqual(JSON.parse(ok.stdout), ['--node-name=n1', '--listen=0.0.0.0:9443'], 'arguments reach the agent');
  assert.match(ok.stderr, /CRIU 4\.\d+\.\d+/);

  const old = await run('sh', [ENTRYPOINT], { env: { ...env, MIGPROBE_CRIU_MIN: '99.0' }, allowFail: true });
  assert.equal(old.exitCode, 1);
  assert.match(old.stderr, /CRIU 4\.\S+ at .* is older than 99\.0/);
  assert.equal(old.stdout, '', 'the agent did not start');

  const missing = await run('sh', [ENTRYPOINT], { env: { ...env, MIGPROBE_CRIU: join(dir, 'no-criu') }, allowFail: true });
  assert.equal(missing.exitCode, 1);
  assert.match(missing.stderr, /cannot run CRIU/);
});

test('the Dockerfiles agree with hack/lib.sh, the chart and .dockerignore', () => {
  const ctl = dockerfile('Dockerfile.controller');
  const agent = dockerfile('Dockerfile.agent');
  const node = libVar('MIGPROBE_NODE_VERSION');
  const criuMin = libVar('MIGPROBE_CRIU_MIN');
  for (const [name, text] of [['Dockerfile.controller', ctl], ['Dockerfile.agent', agent]] as const) {
    assert.match(text, new RegExp(`^ARG NODE_VERSION=${node.replace(/\./g, '\\.')}$`, 'm'), `${name} pins Node ${node} like hack/lib.sh`);
    // A user's `docker build` gets the public image; hack/images.sh passes its local base as NODE_IMAGE.
    assert.match(text, /^ARG NODE_IMAGE=node:\$\{NODE_VERSION\}-trixie-slim$/m, `${name}: NODE_IMAGE defaults to the public node image`);
    const froms = [...text.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    assert.ok(froms.length > 0);
    for (const from of froms) assert.equal(from, '${NODE_IMAGE}', `${name}: every stage starts FROM \${NODE_IMAGE}`);
  }
  assert.match(agent, new RegExp(`^ARG CRIU_MIN=${criuMin.replace(/\./g, '\\.')}$`, 'm'), `the agent image refuses CRIU below ${criuMin}`);
  assert.match(agent, /Suites: sid/);
  assert.match(agent, /make -C "criu-\$ver" -j"\$\(nproc\)" criu/);

  const values = parseYaml(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8')) as {
    controller: { podSecurityContext: { runAsUser: number }; port: number };
    agent: { port: number };
  };
  assert.match(ctl, new RegExp(`^USER ${values.controller.podSecurityContext.runAsUser}:`, 'm'), 'the controller image runs as the chart\'s runAsUser');
  assert.match(ctl, /^ENTRYPOINT \["node", "\/app\/dist\/controller\/main\.js"\]$/m);
  assert.match(ctl, new RegExp(`^EXPOSE ${values.controller.port}$`, 'm'));
  assert.match(agent, new RegExp(`^EXPOSE ${values.agent.port}$`, 'm'));
  const daemonset = readFileSync(join(CHART_DIR, 'templates', 'agent-daemonset.yaml'), 'utf8');
  assert.match(daemonset, /name: MIGPROBE_CRIU\n\s+value: \/usr\/local\/sbin\/criu/);
  assert.match(agent, /^COPY --from=criu \/out\/criu \/usr\/local\/sbin\/criu$/m, 'CRIU lands where the chart points MIGPROBE_CRIU');
  assert.match(readFileSync(ENTRYPOINT, 'utf8'), /\/app\/dist\/agent\/main\.js/);

  // Everything the Dockerfiles COPY from the build context exists and is not excluded by .dockerignore.
  const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
  assert.equal(ignore[0], '*', '.dockerignore starts from nothing and lists what goes in');
  const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
  for (const text of [ctl, agent]) {
    for (const m of text.matchAll(/^COPY (?!--from)(.+)$/gm)) {
      const parts = (m[1] ?? '').split(/\s+/);
      for (const src of parts.slice(0, -1)) {
        assert.ok(existsSync(join(ROOT, src)), `COPY source ${src} exists`);
        assert.ok(
          allowed.some((a) => src === a || src.startsWith(`${a}/`)),
          `COPY source ${src} is let in by .dockerignore`,
        );
      }
    }
  }
});

// ---- The images themselves: built by hack/images.sh, imported into the test bed's containerd, run. ----

interface BuiltImage {
  ref: string;
  archive: string;
}
interface BuiltImages {
  agent: BuiltImage;
  controller: BuiltImage;
}

let built: Promise<BuiltImages> | undefined;

/** Runs hack/images.sh once per test file (a cold build takes minutes; hack/test.sh has already run it). */
function buildImages(): Promise<BuiltImages> {
  built ??= (async () => {
    const res = await run('bash', [join(ROOT, 'hack', 'images.sh')], { timeoutMs: 3_600_000 });
    const vars = new Map<string, string>();
    for (const m of res.stdout.matchAll(/^export (MIGPROBE_IMAGE_\w+)=(\S+)$/gm)) vars.set(m[1] ?? '', m[2] ?? '');
    const get = (k: string): string => {
      const v = vars.get(k);
      if (!v) throw new Error(`hack/images.sh printed no ${k}:\n${res.stdout}`);
      return v;
    };
    return {
      agent: { ref: get('MIGPROBE_IMAGE_AGENT'), archive: get('MIGPROBE_IMAGE_AGENT_ARCHIVE') },
      controller: { ref: get('MIGPROBE_IMAGE_CONTROLLER'), archive: get('MIGPROBE_IMAGE_CONTROLLER_ARCHIVE') },
    };
  })();
  return built;
}

/**
 * Imports image `which`'s archive into the test bed's containerd for this test (removed after it), and checks
 * that it lands under exactly its ref.
 */
async function imported(t: TestContext, which: keyof BuiltImages): Promise<{ tb: Testbed; ref: string }> {
  const tb = await testbed();
  const { ref, archive } = (await buildImages())[which];
  await ctr(tb.containerd, ['images', 'import', archive], 300_000);
  t.after(async () => await ctr(tb.containerd, ['images', 'rm', ref]).catch(() => undefined));
  const names = (await ctr(tb.containerd, ['images', 'ls', '-q'])).split('\n');
  assert.ok(names.includes(ref), `ctr images import of ${archive} gives ${ref}; containerd has: ${names.join(' ')}`);
  return { tb, ref };
}

/**
 * Runs `args` (or the image's entry point, when empty) in a fresh container of `ref` in the foreground, and
 * returns what it printed. After `ms` the container is killed; exitCode is then -1.
 */
async function runInImage(tb: Testbed, ref: string, args: string[], ms = 60_000): Promise<RunResult> {
  const id = `mp-img-${randomBytes(4).toString('hex')}`;
  try {
    return await run(tb.containerd.ctr ?? 'ctr', ctrArgs(tb.containerd, 'run', '--rm', ref, id, ...args), { allowFail: true, timeoutMs: ms });
  } finally {
    await removeContainer(tb.containerd, id);
  }
}

test('hack/images.sh builds both images, cached: a second run rebuilds nothing and names the same archives', { timeout: 3_600_000 }, async () => {
  const first = await buildImages();
  for (const { ref, archive } of [first.agent, first.controller]) {
    assert.match(ref, /^localhost\/migprobe-(agent|controller):[0-9a-f]{16}$/);
    assert.ok(statSync(archive).size > 10_000_000, `${archive} holds an image`);
    assert.ok(archive.endsWith(`${ref.slice(ref.lastIndexOf(':') + 1)}.oci.tar`), `${archive} carries the tag of ${ref}`);
  }
  const t0 = Date.now();
  const again = await run('bash', [join(ROOT, 'hack', 'images.sh')], { timeoutMs: 600_000 });
  const secs = (Date.now() - t0) / 1000;
  assert.doesNotMatch(again.stderr, /building|making the base/, 'nothing was rebuilt');
  assert.ok(secs < 60, `a run with nothing changed takes seconds, took ${secs} s`);
  assert.match(again.stdout, new RegExp(`^export MIGPROBE_IMAGE_AGENT=${first.agent.ref}$`, 'm'));
  assert.match(again.stdout, new RegExp(`^export MIGPROBE_IMAGE_CONTROLLER=${first.controller.ref}$`, 'm'));
});

test('the agent image runs in containerd: CRIU >= the minimum, ctr, nft, ss and nsenter, and its entry point checks CRIU', { timeout: 3_600_000 }, async (t) => {
  const { tb, ref } = await imported(t, 'agent');

  const criu = await runInImage(tb, ref, ['criu', '--version']);
  assert.equal(criu.exitCode, 0, criu.stderr);
  const have = /^Version: (\S+)$/m.exec(criu.stdout)?.[1] ?? '';
  const cmp = await run('dpkg', ['--compare-versions', have, 'ge', libVar('MIGPROBE_CRIU_MIN')], { allowFail: true });
  assert.equal(cmp.exitCode, 0, `the image's CRIU ${have || '(none)'} is at least ${libVar('MIGPROBE_CRIU_MIN')}`);

  for (const [tool, out] of [['ctr', /^ctr github\.com\/containerd\/containerd /], ['nft', /^nftables v1\./], ['ss', /^ss utility, iproute2/], ['nsenter', /^nsenter from util-linux/]] as const) {
    const res = await runInImage(tb, ref, [tool, '--version']);
    assert.equal(res.exitCode, 0, `${tool} --version in the agent image: ${res.stderr}`);
    assert.match(res.stdout, out, `${tool} --version in the agent image`);
  }

  // The entry point as the chart runs it, without the chart's flags: CRIU checked, then the agent refuses.
  const entry = await runInImage(tb, ref, []);
  assert.match(entry.stderr + entry.stdout, new RegExp(`migprobe-agent: CRIU ${have.replace(/\./g, '\\.')} at /usr/local/sbin/criu`));
  assert.match(entry.stderr + entry.stdout, /--node-name \(or NODE_NAME\) is required/, 'the agent itself started and asked for its flags');
  assert.equal(entry.exitCode, 1);
});

test('the controller image runs in containerd as uid 65532 and starts the controller, which waits for a cluster', { timeout: 3_600_000 }, async (t) => {
  const { tb, ref } = await imported(t, 'controller');

  const id = await runInImage(tb, ref, ['id', '-u']);
  assert.equal(id.stdout.trim(), '65532', 'USER 65532 like the chart\'s runAsUser');
  const main = await runInImage(tb, ref, ['test', '-f', '/app/dist/controller/main.js']);
  assert.equal(main.exitCode, 0, '/app/dist/controller/main.js is in the image');

  // The entry point's own command with a token flag: node starts the controller, which serves its health
  // endpoint and retries its informers against the cluster it does not have. Killed after 8 s.
  const run8 = await runInImage(tb, ref, ['node', '/app/dist/controller/main.js', '--token-service-account', 'migprobe-system/migprobe-controller'], 8_000);
  const out = run8.stdout + run8.stderr;
  assert.match(out, /"message":"metrics and health endpoints up"/, out.slice(0, 2000));
  assert.match(out, /"reason":"list_error"/, 'its informers fail for lack of a cluster');
  assert.doesNotMatch(out, /controller failed to start/);
});
