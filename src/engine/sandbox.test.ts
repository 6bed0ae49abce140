import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupMounts, matchRootAttributes, overlayOptions, unmountedHierarchies, INIT_SCRIPT } from './sandbox.ts';

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

test('hierarchies mounted nowhere here: named ones get none, controllers keep their names', () => {
  const procCgroup = [
    '13:name=zdtmtst.defaultroot:/',
    '12:name=zdtmtst:/',
    '9:name=systemd:/',
    '8:pids:/',
    '7:net_cls,net_prio:/',
    '4:memory:/process_api/x',
    '0::/',
  ].join('\n');
  const mi = [
    '35 25 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory',
    '36 25 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw',
    '39 25 0:34 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids',
    '40 25 0:35 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/x,name=systemd',
  ].join('\n');
  assert.deepEqual(unmountedHierarchies(procCgroup, mi), ['none,name=zdtmtst.defaultroot', 'none,name=zdtmtst', 'net_cls,net_prio']);
});

test('the overlay root takes the top layer\'s mode and owner', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mp-sb-attr-'));
  t.after(async () => await rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'top'), { mode: 0o775 });
  await chmod(join(dir, 'top'), 0o775);
  await mkdir(join(dir, 'upper'), { mode: 0o755 });
  await matchRootAttributes(join(dir, 'upper'), join(dir, 'top'));
  assert.equal((await stat(join(dir, 'upper'))).mode & 0o7777, 0o775);
});
