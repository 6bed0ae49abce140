// The container images cannot be built here (no Docker engine), so this checks every part of their build
// that can run on this machine: the TypeScript build the images run, the script that picks CRIU's runtime
// libraries (on the real CRIU the test bed built), the agent's start-up CRIU version check (with the real
// CRIU), and that the Dockerfiles agree with the chart and with the pinned versions in hack/lib.sh.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { testbed } from '../testbed/index.ts';
import { run } from '../testbed/proc.ts';
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
    for (const m of text.matchAll(/^FROM (\S+)/gm)) assert.match(m[1] ?? '', /^node:\$\{NODE_VERSION\}-trixie-slim$/, `${name}: ${m[1]}`);
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
