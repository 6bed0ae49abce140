// Proves CRIU is real and new enough: `criu check` passes, and `criu dump --leave-running` of a real
// container succeeds while the container keeps running.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { runContainer, testbed } from '../../testbed/index.ts';
import { run, sleep, waitFor } from '../../testbed/proc.ts';

function taskState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

async function counter(pid: number): Promise<number> {
  return await waitFor('the counter file', 10_000, async () => {
    const f = `/proc/${pid}/root/tmp/count`;
    if (!existsSync(f)) return undefined;
    const n = Number(readFileSync(f, 'utf8').trim());
    return Number.isFinite(n) && n > 0 ? n : undefined;
  });
}

test('MIGPROBE_CRIU is CRIU 4.2 or newer and `criu check` passes', async () => {
  const tb = await testbed();
  assert.equal(process.env.MIGPROBE_CRIU, tb.criu);
  const ver = (await run(tb.criu, ['--version'])).stdout;
  const m = /Version:\s*(\d+)\.(\d+)/.exec(ver);
  assert.ok(m, `no version in: ${ver}`);
  assert.ok(Number(m[1]) > 4 || (Number(m[1]) === 4 && Number(m[2]) >= 2), `CRIU ${m[0]} is older than 4.2`);
  const check = await run(tb.criu, ['check'], { allowFail: true, timeoutMs: 60_000 });
  assert.equal(check.exitCode, 0, check.stderr);
  assert.match(check.stdout + check.stderr, /Looks good/);
});

test('criu dump --leave-running of a real container succeeds and the container keeps running', async (t) => {
  const tb = await testbed();
  const c = await runContainer({ args: ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done'] });
  const dir = mkdtempSync(join(tmpdir(), 'smoke-dump-'));
  t.after(async () => {
    await c.remove();
    rmSync(dir, { recursive: true, force: true });
  });
  const before = await counter(c.pid);
  const dump = await run(
    tb.criu,
    ['dump', '-t', String(c.pid), '--leave-running', '-D', dir, '-o', 'dump.log', '-v2', '--network-lock', 'nftables'],
    { allowFail: true, timeoutMs: 60_000 },
  );
  const log = existsSync(join(dir, 'dump.log')) ? readFileSync(join(dir, 'dump.log'), 'utf8') : '';
  assert.equal(dump.exitCode, 0, `criu dump failed: ${log.split('\n').filter((l) => l.includes('Error')).join('\n')}`);
  assert.ok(readdirSync(dir).includes('inventory.img'), 'the dump wrote its inventory');
  assert.ok(readdirSync(dir).some((f) => f.startsWith('pages-')), 'a full dump writes page images');
  assert.ok(readdirSync(dir).includes('pstree.img'));

  // Still running: not stopped, and the counter keeps moving.
  assert.notEqual(taskState(c.pid), 'T');
  assert.notEqual(taskState(c.pid), 't');
  await sleep(500);
  const after = await counter(c.pid);
  assert.ok(after > before, `counter did not move after the dump (${before} -> ${after})`);
});
