// Runs inside the conformance bench's criu shim (see bench/conformance.ts), once per zdtm test, just before
// zdtm.py's first real `criu dump --tree PID`: takes migprobe's verdict on that same process tree with the real
// CLI (`migprobe check --pid PID --json`) and writes it into the test's state folder. It never fails the dump:
// whatever happens is recorded, and the real CRIU runs after it either way.
//
//   node bench/zdtm/verdict-hook.ts <criu dump argv...>      (MIGPROBE_ZDTM_STATE names the state folder)
//
// The state folder holds check.json ({ "args": [...extra migprobe flags], "home": [the bench's cgroup.procs files] })
// written by the bench, and gets
// verdict.json (stdout), verdict.stderr, verdict.rc and verdict.ms.

import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The PID after `--tree` (or `-t`) in a criu dump argv. */
export function treePid(argv: readonly string[]): number | undefined {
  for (let i = 0; i + 1 < argv.length; i++) {
    if (argv[i] === '--tree' || argv[i] === '-t') {
      const n = Number(argv[i + 1]);
      return Number.isSafeInteger(n) && n > 0 ? n : undefined;
    }
  }
  return undefined;
}

function main(): void {
  const state = process.env['MIGPROBE_ZDTM_STATE'];
  if (state === undefined || state === '') return;
  const pid = treePid(process.argv.slice(2));
  if (pid === undefined) {
    writeFileSync(join(state, 'verdict.rc'), 'nopid\n');
    return;
  }
  const { args, home } = JSON.parse(readFileSync(join(state, 'check.json'), 'utf8')) as { args: string[]; home: string[] };
  // Back into the bench's own cgroups: the test has cgroups of its own, as a container has, and migprobe's CRIU
  // must not share them.
  for (const procs of home) writeFileSync(procs, String(process.pid));
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/migprobe.js'), 'check', '--pid', String(pid), '--json', ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 300_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  writeFileSync(join(state, 'verdict.ms'), `${Math.round(performance.now() - t0)}\n`);
  writeFileSync(join(state, 'verdict.json'), r.stdout);
  writeFileSync(join(state, 'verdict.stderr'), `${r.stderr}${r.error === undefined ? '' : `\n${String(r.error)}`}`);
  writeFileSync(join(state, 'verdict.rc'), `${r.status ?? `signal ${r.signal ?? '?'}`}\n`);
}

if (import.meta.url === `file://${process.argv[1] ?? ''}`) main();
