// The test bed as tests see it. `hack/test.sh` (or `hack/testbed.sh up`) starts one shared test bed —
// etcd + kube-apiserver, containerd with the test image — and points MIGPROBE_TESTBED at its state file.
// Tests call `testbed()` to reach it, `runContainer()` for real containers, and `kube.*` for Node/Pod
// objects. Tests that need an API server of their own (to restart it, say) call `startApiServer`.
// Tests on the real three-node cluster (testbed/cluster.ts; hack/test.sh starts it for test/cluster/
// and points MIGPROBE_CLUSTER at its state file) call `cluster()`, and `importClusterImage()` to put an
// image into every node's runtime.

import { readFileSync, existsSync } from 'node:fs';
import { isReady, type ApiServerState } from './apiserver.ts';
import { join } from 'node:path';
import { runContainer as runIn, importImage, type RunningContainer, type RunOptions, type ContainerdState } from './containerd.ts';
import { buildImage } from './image.ts';
import { run } from './proc.ts';
import * as kube from './kube.ts';
import { clusterHealthy, importImageToCluster, stateFileOf, DEFAULT_CLUSTER_NAME, type Cluster } from './cluster.ts';

export { kube };
export { startApiServer, stopApiServer, restartApiServer, freePort, type ApiServerState } from './apiserver.ts';
export type { RunningContainer } from './containerd.ts';
export { checkpointContainer, kubeletRequest, runOnNode, hostPathOnNode, type Cluster, type ClusterNode } from './cluster.ts';

export const DEFAULT_STATE_FILE = '/var/lib/migprobe-testbed/shared/state.json';

export interface Testbed {
  stateDir: string;
  criu: string;
  kubectl: string;
  helm: string;
  helm3: string;
  kubeconfigPath: string;
  apiserverUrl: string;
  apiserver: ApiServerState;
  containerd: ContainerdState;
  image: { ref: string };
}

const HOW = 'start it with `bash hack/test.sh` (runs every test) or `bash hack/testbed.sh up` and `eval "$(bash hack/testbed.sh env)"`';

let cached: Testbed | undefined;

/** The running shared test bed. Throws with a message saying how to start it when it is not up. */
export async function testbed(): Promise<Testbed> {
  if (cached) return cached;
  const file = process.env.MIGPROBE_TESTBED ?? DEFAULT_STATE_FILE;
  if (!existsSync(file)) throw new Error(`the migprobe test bed is not running (no ${file}): ${HOW}`);
  const tb = JSON.parse(readFileSync(file, 'utf8')) as Testbed;
  if (!(await isReady(tb.apiserver))) {
    throw new Error(`the test bed's kube-apiserver at ${tb.apiserverUrl} does not answer /readyz: ${HOW}`);
  }
  const ver = await run('ctr', ['--address', tb.containerd.address, 'version'], { allowFail: true, timeoutMs: 10_000 });
  if (ver.exitCode !== 0) throw new Error(`the test bed's containerd at ${tb.containerd.address} does not answer: ${HOW}`);
  process.env.MIGPROBE_CRIU ??= tb.criu;
  cached = tb;
  return tb;
}

let currentImage: string | undefined;

/**
 * The ref of the test image built from the current busybox and test/programs/*.c. When a program changed
 * since the test bed started, the new image is built and imported first.
 */
export async function testImage(): Promise<string> {
  if (currentImage) return currentImage;
  const tb = await testbed();
  const cache = process.env.MIGPROBE_CACHE ?? join(process.env.HOME ?? '/root', '.cache/migprobe');
  const img = await buildImage(join(cache, 'images'));
  if (img.ref !== tb.image.ref) await importImage(tb.containerd, img.ref, img.tarball);
  currentImage = img.ref;
  return img.ref;
}

/** Starts a real container from the test image (busybox + test/programs) in the shared containerd. */
export async function runContainer(opts: Omit<RunOptions, 'image'> & { image?: string }): Promise<RunningContainer> {
  const tb = await testbed();
  return await runIn(tb.containerd, { ...opts, image: opts.image ?? (await testImage()) });
}

const CLUSTER_HOW =
  'start it with `bash hack/test.sh \'test/cluster/**/*.test.ts\'` (hack/test.sh starts it for the whole suite and for files under test/cluster/) ' +
  'or `bash hack/testbed.sh cluster-up` and `eval "$(bash hack/testbed.sh cluster-env)"`';

let cachedCluster: Cluster | undefined;

/**
 * The running three-node cluster: node-a, node-b and node-c (each on containerd 2 unless
 * MIGPROBE_CLUSTER_RUNTIMES says otherwise), its admin kubeconfig
 * (`kubeconfigPath`), node IPs, kubelet URLs and checkpoints folders, the refs of the test and pause images.
 * Throws with a message saying how to start it when it is not up.
 */
export async function cluster(): Promise<Cluster> {
  if (cachedCluster) return cachedCluster;
  const file = process.env.MIGPROBE_CLUSTER ?? stateFileOf(DEFAULT_CLUSTER_NAME);
  if (!existsSync(file)) throw new Error(`the migprobe test cluster is not running (no ${file}): ${CLUSTER_HOW}`);
  const c = JSON.parse(readFileSync(file, 'utf8')) as Cluster;
  if (!c.readyMs || !(await clusterHealthy(c))) {
    throw new Error(`the test cluster ${c.name} is not up (a daemon is down, or it never became ready): bash hack/testbed.sh cluster-down ${c.name}, then ${CLUSTER_HOW}`);
  }
  process.env.MIGPROBE_CRIU ??= c.criu;
  cachedCluster = c;
  return c;
}

/**
 * Imports an OCI image archive (e.g. `buildah push IMAGE oci-archive:FILE`) into every node's runtime as
 * `ref`, and returns the ref to put in pod specs (normalized as the kubelet asks for it:
 * `migprobe-agent:0.1.0` becomes `docker.io/library/migprobe-agent:0.1.0`). Use imagePullPolicy: Never.
 */
export async function importClusterImage(archive: string, ref: string): Promise<string> {
  return await importImageToCluster(await cluster(), archive, ref);
}
