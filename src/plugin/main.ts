// `kubectl migprobe` entry point (kubectl runs kubectl-migprobe from PATH with the words after `migprobe`):
// wires the API client, the real clock and the process streams to runPlugin, sets the exit code.

import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Clock } from '../kube/clock.ts';
import { connect } from './kube.ts';
import { runPlugin } from './plugin.ts';

/** The real clock with timers that keep the process alive (realClock's are unref'ed): a wait is all there is to do. */
const clock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, Math.max(0, ms)),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof globalThis.setTimeout>),
};

try {
  process.exitCode = await runPlugin(
    process.argv.slice(2),
    {
      connect,
      clock,
      freshToken: () => `${new Date().toISOString()}-${randomBytes(3).toString('hex')}`,
      version: async () => {
        // src/plugin/main.ts and dist/plugin/main.js both sit two levels below package.json
        const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
        return pkg.version ?? 'unknown';
      },
    },
    {
      out: (s) => process.stdout.write(s),
      err: (s) => process.stderr.write(s),
      errIsTTY: process.stderr.isTTY,
      columns: process.stdout.columns ?? 100,
    },
  );
} catch (err) {
  process.stderr.write(`kubectl-migprobe: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 2;
}
