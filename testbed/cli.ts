// `node testbed/cli.ts up|down|status [name]`: starts or stops a test bed whose daemons outlive this
// process, with its state in /var/lib/migprobe-testbed/<name>/state.json. Used by hack/testbed.sh,
// hack/test.sh and hack/demo.sh.

import { mkdirSync, writeFileSync, existsSync, readFileSync, rmSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { startApiServer, stopApiServer, isReady, binariesFromEnv } from './apiserver.ts';
import { startContainerd, stopContainerd, importImage } from './containerd.ts';
import { buildImage } from './image.ts';
import { run, isAlive, tiniPath } from './proc.ts';
import type { Testbed } from './index.ts';

const BASE = '/var/lib/migprobe-testbed';

function need(name: string): string {
  const v = process.env[name];
  if (!v || !existsSync(v)) throw new Error(`${name} is not set or missing (${v ?? 'unset'}): run \`bash hack/provision.sh\` and \`. ~/.cache/migprobe/env.sh\``);
  return v;
}

async function criuVersionOk(criu: string): Promise<string> {
  const out = (await run(criu, ['--version'], { allowFail: true })).stdout;
  const m = /Version:\s*(\d+)\.(\d+)(?:\.(\d+))?/.exec(out);
  if (!m) throw new Error(`${criu} --version printed no version: is MIGPROBE_CRIU a CRIU binary?`);
  const [maj, min] = [Number(m[1]), Number(m[2])];
  if (maj < 4 || (maj === 4 && min < 2)) {
    throw new Error(`CRIU ${m[0]} at ${criu} is too old: migprobe needs 4.2 or newer (bash hack/provision.sh builds it)`);
  }
  return `${m[1]}.${m[2]}.${m[3] ?? 0}`;
}

async function up(name: string): Promise<Testbed> {
  const stateDir = join(BASE, name);
  const stateFile = join(stateDir, 'state.json');
  if (existsSync(stateFile)) {
    const old = JSON.parse(readFileSync(stateFile, 'utf8')) as Testbed;
    if ((await isReady(old.apiserver)) && isAlive(old.containerd.pid)) {
      console.error(`test bed ${name} is already up`);
      return old;
    }
    await down(name);
  }
  const criu = need('MIGPROBE_CRIU');
  await criuVersionOk(criu);
  binariesFromEnv();
  const cache = process.env.MIGPROBE_CACHE ?? join(process.env.HOME ?? '/root', '.cache/migprobe');
  mkdirSync(stateDir, { recursive: true });
  const t0 = Date.now();
  const [image, apiserver, containerd] = await Promise.all([
    buildImage(join(cache, 'images')).catch((e: unknown) => {
      throw new Error(`building the test image failed: ${(e as Error).message}`);
    }),
    startApiServer({ dir: join(stateDir, 'apiserver') }),
    // tini as a child subreaper: the shims outlive their starter and would stay zombies of PID 1, which does not reap here.
    startContainerd({ dir: join(stateDir, 'containerd'), criuBinDir: dirname(criu), reaper: tiniPath() }),
  ]);
  await importImage(containerd, image.ref, image.tarball);
  const tb: Testbed = {
    stateDir,
    criu,
    kubectl: need('MIGPROBE_KUBECTL'),
    helm: need('MIGPROBE_HELM'),
    helm3: need('MIGPROBE_HELM3'),
    kubeconfigPath: apiserver.kubeconfigPath,
    apiserverUrl: apiserver.url,
    apiserver,
    containerd,
    image: { ref: image.ref },
  };
  writeFileSync(stateFile, JSON.stringify(tb, null, 2));
  console.error(`test bed ${name} up in ${Date.now() - t0} ms: kube-apiserver ${apiserver.url}, containerd ${containerd.address}, image ${image.ref}`);
  return tb;
}

async function down(name: string): Promise<void> {
  const stateDir = join(BASE, name);
  const stateFile = join(stateDir, 'state.json');
  if (existsSync(stateFile)) {
    const tb = JSON.parse(readFileSync(stateFile, 'utf8')) as Testbed;
    await stopContainerd(tb.containerd).catch((e: unknown) => console.error(`containerd: ${(e as Error).message}`));
    await stopApiServer(tb.apiserver).catch((e: unknown) => console.error(`apiserver: ${(e as Error).message}`));
  }
  // Leftovers of a crashed run: network namespaces the test bed made. Only when no other test bed is up, since
  // the names do not say which test bed made them.
  const others = existsSync(BASE) ? readdirSync(BASE).filter((n) => n !== name && existsSync(join(BASE, n, 'state.json'))) : [];
  if (others.length === 0 && existsSync('/var/run/netns')) {
    for (const ns of readdirSync('/var/run/netns').filter((n) => n.startsWith('mp-'))) {
      await run('ip', ['netns', 'del', ns], { allowFail: true });
    }
  }
  // etcd data and the apiserver's tokens are per run; containerd's content store is kept for speed.
  rmSync(join(stateDir, 'apiserver'), { recursive: true, force: true });
  rmSync(stateFile, { force: true });
}

const [cmd = 'status', name = 'shared'] = process.argv.slice(2);
if (!/^[a-z0-9-]{1,32}$/.test(name)) {
  console.error(`bad test bed name ${name}`);
  process.exit(2);
}
try {
  if (cmd === 'up') {
    await up(name);
    console.log(join(BASE, name, 'state.json'));
  } else if (cmd === 'down') {
    await down(name);
  } else if (cmd === 'status') {
    const f = join(BASE, name, 'state.json');
    if (!existsSync(f)) {
      console.log(`test bed ${name}: down`);
      process.exit(1);
    }
    const tb = JSON.parse(readFileSync(f, 'utf8')) as Testbed;
    const ok = (await isReady(tb.apiserver)) && isAlive(tb.containerd.pid);
    console.log(`test bed ${name}: ${ok ? 'up' : 'broken'}\n  kube-apiserver ${tb.apiserverUrl} (kubeconfig ${tb.kubeconfigPath})\n  containerd ${tb.containerd.address} (namespace ${tb.containerd.namespace})\n  CRIU ${tb.criu}\n  image ${tb.image.ref}`);
    process.exit(ok ? 0 : 1);
  } else {
    console.error('usage: node testbed/cli.ts up|down|status [name]');
    process.exit(2);
  }
} catch (err) {
  console.error(`test bed: ${(err as Error).message}`);
  process.exit(1);
}
