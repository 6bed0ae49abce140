// Helpers for the src/kube integration tests: a private API server, a TCP proxy that can cut every
// connection to it (a network outage as the client sees it), etcd compaction (to get real 410s), and polling.

import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { startApiServer, stopApiServer, type ApiServerState } from '../../testbed/index.ts';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 100 ms until it returns true; throws with `what` after `timeoutMs`. */
export async function eventually(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** A private etcd + kube-apiserver in a temp folder; `cleanup()` stops both and removes the folder. */
export async function privateApiServer(): Promise<{ st: ApiServerState; kc: k8s.KubeConfig; cleanup(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'migprobe-kube-'));
  let st: ApiServerState;
  try {
    st = await startApiServer({ dir });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(st.kubeconfigPath);
  return {
    st,
    kc,
    cleanup: async () => {
      await stopApiServer(st);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A TCP pass-through to `target`. `cut()` kills every connection and refuses new ones until `restore()`. */
export class CuttableProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  private readonly targetHost: string;
  private readonly targetPort: number;

  constructor(targetHost: string, targetPort: number) {
    this.targetHost = targetHost;
    this.targetPort = targetPort;
  }

  async start(port = 0): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, this.targetHost);
      this.sockets.add(client);
      this.sockets.add(upstream);
      const drop = (): void => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    const addr = server.address();
    this.port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  }

  async cut(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  async restore(): Promise<void> {
    await this.start(this.port);
  }

  async close(): Promise<void> {
    await this.cut();
  }
}

/** A copy of `kubeconfigPath` pointing at `https://127.0.0.1:<port>` (the proxy), loaded. */
export function kubeConfigVia(kubeconfigPath: string, port: number, dir: string): k8s.KubeConfig {
  const text = readFileSync(kubeconfigPath, 'utf8').replace(/server: https:\/\/[^\s]+/, `server: https://127.0.0.1:${port}`);
  const file = join(dir, `kubeconfig-proxy-${port}`);
  writeFileSync(file, text, { mode: 0o600 });
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(file);
  return kc;
}

/** etcd's current revision (through its v3 JSON gateway). */
export async function etcdRevision(etcdPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${etcdPort}/v3/kv/range`, {
    method: 'POST',
    body: JSON.stringify({ key: Buffer.from('/registry').toString('base64'), limit: 1, keys_only: true }),
  });
  const body = (await res.json()) as { header?: { revision?: string } };
  return Number(body.header?.revision ?? 0);
}

/** Compacts etcd's history up to its current revision: older resourceVersions now answer 410 Gone. */
export async function compactEtcd(etcdPort: number): Promise<number> {
  const revision = await etcdRevision(etcdPort);
  const res = await fetch(`http://127.0.0.1:${etcdPort}/v3/kv/compaction`, {
    method: 'POST',
    body: JSON.stringify({ revision: String(revision), physical: true }),
  });
  if (!res.ok) throw new Error(`etcd compaction failed: HTTP ${res.status} ${await res.text()}`);
  return revision;
}
