import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuTicks, parseStatFields, taskIds, taskState, threadStates } from './proc-task.ts';

void test('stat fields start after the last parenthesis, so a comm with spaces and parentheses is skipped', () => {
  const f = parseStatFields('42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0\n');
  assert.equal(f[0], 'S');
  assert.equal(f[1], '1');
  assert.equal(Number(f[11]) + Number(f[12]), 10);
});

void test('task state, ticks and threads from a procfs tree; a missing process is undefined, gone or empty', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'proc-task-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  await mkdir(join(root, '7', 'task', '7'), { recursive: true });
  await mkdir(join(root, '7', 'task', '8'), { recursive: true });
  await writeFile(join(root, '7', 'stat'), '7 (w) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0\n');
  await writeFile(join(root, '7', 'task', '7', 'stat'), '7 (w) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0\n');
  await writeFile(join(root, '7', 'task', '8', 'stat'), '8 (w:t) T 1 7 7 0 -1 0 0 0 0 0 1 1 0 0\n');
  assert.equal(taskState(7, undefined, root), 'R');
  assert.equal(taskState(7, 8, root), 'T');
  assert.equal(cpuTicks(7, root), 11);
  assert.deepEqual(taskIds(7, root).sort(), [7, 8]);
  assert.deepEqual(threadStates([7, 9], root).sort(), ['R', 'T', 'gone']);
  assert.equal(taskState(9, undefined, root), undefined);
  assert.equal(cpuTicks(9, root), undefined);
});

void test('this process is running or sleeping, as the real /proc says', () => {
  assert.ok(['R', 'S'].includes(taskState(process.pid) ?? ''));
  assert.ok(taskIds(process.pid).includes(process.pid));
});
