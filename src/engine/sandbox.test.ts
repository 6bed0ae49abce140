import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cgroupMounts, overlayOptions, INIT_SCRIPT } from './sandbox.ts';

test('overlay options list lower dirs top first and refuse separators', () => {
  assert.equal(overlayOptions(['/a', '/b'], '/u', '/w'), 'lowerdir=/a:/b,upperdir=/u,workdir=/w');
  assert.throws(() => overlayOptions([], '/u', '/w'), /at least one/);
  assert.throws(() => overlayOptions(['/a:b'], '/u', '/w'), /cannot contain/);
  assert.throws(() => overlayOptions(['/a'], '/u,x', '/w'), /cannot contain/);
});

test('cgroup hierarchies from mountinfo (v1 and v2)', () => {
  const mi = [
    '35 25 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory',
    '36 25 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw',
    '37 25 0:32 / /proc rw - proc proc rw',
    '38 25 0:33 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct',
  ].join('\n');
  assert.deepEqual(cgroupMounts(mi), ['/sys/fs/cgroup/memory', '/sys/fs/cgroup/unified', '/sys/fs/cgroup/cpu,cpuacct']);
});

test('the init keeps PID 1 alive after CRIU exits and reports its status', () => {
  assert.match(INIT_SCRIPT, /migprobe-criu-exit:\$rc/);
  assert.match(INIT_SCRIPT, /read _unused/);
});
