import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EXCERPT_CAP, errorText, reasonsFromCriuLog } from './criu-log.ts';

const codes = (log: string, phase: 'dump' | 'restore' = 'dump'): string[] =>
  reasonsFromCriuLog(log, phase).reasons.map((r) => r.code);

void test('errorText strips timestamp, pid prefix and source location', () => {
  assert.equal(
    errorText('(00.012345) Error (criu/sk-unix.c:874): unix: External socket is used. Consider using --ext-unix-sk option.'),
    'unix: External socket is used. Consider using --ext-unix-sk option.',
  );
  assert.equal(errorText('    42: Error (criu/cr-restore.c:1): boom'), 'boom');
  assert.equal(errorText('(00.1) Warn  (criu/x.c:1): not an error'), undefined);
});

void test('dump errors map to stable codes', () => {
  assert.deepEqual(
    codes('(00.01) Error (criu/sk-unix.c:874): unix: External socket is used. Consider using --ext-unix-sk option.'),
    ['ExternalUnixSocket'],
  );
  assert.deepEqual(
    codes('Error (criu/sk-unix.c:881): unix: Can\'t dump half of stream unix connection. name: /x; peer name: /y'),
    ['ExternalUnixSocket'],
  );
  assert.deepEqual(codes('Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using --tcp-established option.'), ['TCPEstablished']);
  const inflight = reasonsFromCriuLog(
    [
      'Error (criu/sk-inet.c:185): inet: In-flight connection (l) for 1a4d8a',
      'Error (criu/sk-inet.c:186): inet: In-flight connections can be ignored with the --skip-in-flight option.',
      'Error (criu/cr-dump.c:1975): Dumping FAILED.',
    ].join('\n'),
    'dump',
  );
  assert.deepEqual(inflight.reasons.map((r) => r.code), ['TCPEstablished']);
  assert.match(inflight.reasons[0]?.hint ?? '', /skip-in-flight/);
  assert.deepEqual(
    codes('Error (criu/parasite-syscall.c:1): send_fds failed (-22)\nError (criu/parasite-syscall.c:280): Can\'t retrieve FDs from socket'),
    ['IoUring'],
  );
  assert.deepEqual(
    codes('Error (criu/file-lock.c:110): Some file locks are hold by dumping tasks! You can try --file-locks to dump them.'),
    ['FileLocks'],
  );
  assert.deepEqual(
    codes('Error (criu/files-reg.c:1790): Can\'t lookup mount=1234 for fd=3 path=/secretmem (deleted)'),
    ['MemfdSecret'],
  );
  assert.deepEqual(
    codes('Error (criu/files-ext.c:94): Can\'t dump file 3 of that type [20600] (chr 10:232)'),
    ['DeviceFile'],
  );
  assert.deepEqual(codes('Error (criu/sockets.c:448): Sockets (family 38 proto 0) are not collected'), ['UnsupportedSocket']);
  assert.deepEqual(
    codes('Error (criu/files-ext.c:94): Can\'t dump file 3 of that type [600] (anon [userfaultfd])'),
    ['UnsupportedFile'],
  );
  assert.deepEqual(codes('Error (criu/files-ext.c:94): Can\'t dump file 5 of that type [600] (anon [io_uring])'), ['IoUring']);
});

// Lines captured from CRIU 4.2.1 on this machine, dumping the test programs with the preflight turned off.
void test('real CRIU 4.2.1 dump logs', () => {
  assert.deepEqual(
    codes(
      [
        'Error (criu/proc_parse.c:502): Unknown shit 100600 (/secretmem (deleted))',
        'Error (criu/proc_parse.c:738): Can\'t open 28875\'s mapfile link 7f6cd5756000: No such device or address',
        'Error (criu/cr-dump.c:1440): Collect mappings (pid: 28875) failed with -1',
        'Error (criu/cr-dump.c:1975): Dumping FAILED.',
      ].join('\n'),
    ),
    ['MemfdSecret'],
  );
  assert.deepEqual(
    codes(
      [
        'Error (criu/sockets.c:767): sockets: BUG! Unknown socket collected (family 40)',
        'Error (criu/cr-dump.c:1545): Dump files (pid: 30878) failed with -1',
        'Error (criu/cr-dump.c:1975): Dumping FAILED.',
      ].join('\n'),
    ),
    ['UnsupportedSocket'],
  );
  const ptrace = reasonsFromCriuLog(
    [
      'Error (compel/src/lib/infect.c:262): Unseizable non-zombie 31993 found, state S, err -1/10',
      'Error (compel/src/lib/infect.c:262): Unseizable non-zombie 31993 found, state S, err -1/10',
      'Error (criu/cr-dump.c:1975): Dumping FAILED.',
    ].join('\n'),
    'dump',
  );
  assert.deepEqual(ptrace.reasons.map((r) => r.code), ['Ptraced']);
  assert.deepEqual(
    codes(
      [
        'pie: 1: Error (criu/pie/parasite.c:588): send_fds failed (-22)',
        'Error (criu/parasite-syscall.c:280): Can\'t retrieve FDs from socket',
        'Error (compel/src/lib/infect-rpc.c:44): Message reply from daemon is trimmed (12/0)',
        'Error (criu/cr-dump.c:1975): Dumping FAILED.',
      ].join('\n'),
    ),
    ['IoUring'],
  );
});

void test('ghost file: the hint names the size to exceed', () => {
  const { reasons } = reasonsFromCriuLog(
    '(00.2) Error (criu/files-reg.c:1031): Can\'t dump ghost file /tmp/big of 5242880 size, increase limit',
    'dump',
  );
  assert.equal(reasons.length, 1);
  assert.equal(reasons[0]?.code, 'GhostFileTooLarge');
  assert.match(reasons[0]?.hint ?? '', /ghostLimitBytes.*above 5242880/);
  assert.match(reasons[0]?.message ?? '', /\/tmp\/big/);
  assert.equal(reasons[0]?.phase, 'dump');
});

void test('restore errors: rootfs, CPU (collapsed), kernel feature, TCP', () => {
  assert.deepEqual(
    codes('Error (criu/files-reg.c:2175): File bin/busybox has bad size 1982257 (expect 1982256)', 'restore'),
    ['RootfsMismatch'],
  );
  const cpu = reasonsFromCriuLog(
    [
      'Error (criu/arch/x86/cpu.c:223): cpu: CPU instruction capabilities do not match run time',
      'Error (criu/arch/x86/cpu.c:262): cpu: CPU xfeatures has unsupported bits (0x2e0)',
      'Error (criu/cr-restore.c:1): Restoring FAILED.',
    ].join('\n'),
    'restore',
  );
  assert.deepEqual(cpu.reasons.map((r) => r.code), ['CPUIncompatible']);
  assert.equal(cpu.reasons[0]?.phase, 'restore');
  assert.match(cpu.reasons[0]?.message ?? '', /xfeatures/);
  assert.deepEqual(codes('Error (criu/timens.c:80): Unable to create a new time namespace: Invalid argument', 'restore'), [
    'KernelFeatureMissing',
  ]);
  assert.deepEqual(codes('  12: Error (criu/sk-inet.c:1085): inet: Can\'t connect inet socket back: Network is unreachable', 'restore'), [
    'TCPEstablished',
  ]);
});

void test('several blockers are all reported, duplicates once', () => {
  const log = [
    'Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using --tcp-established option.',
    'Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using --tcp-established option.',
    'Error (criu/file-lock.c:110): Some file locks are hold by dumping tasks! You can try --file-locks to dump them.',
  ].join('\n');
  assert.deepEqual(codes(log), ['TCPEstablished', 'FileLocks']);
});

void test('noise is ignored and unknown errors fall back with the first error line', () => {
  const log = [
    '(00.0001) Error (criu/rlimit.c:1): rlimit: Can\'t setup RLIMIT_NOFILE for self',
    '(00.0002) Error (criu/net.c:1): iptables-restore -V failed',
    '(00.0003) Error (criu/vdso.c:1): vdso: Invalid ELF magic',
    '(00.0004) Error (criu/cr-restore.c:1): Restoring FAILED.',
  ].join('\n');
  const r = reasonsFromCriuLog(log, 'restore');
  assert.deepEqual(r.reasons.map((x) => x.code), ['RestoreFailed']);
  assert.match(r.reasons[0]?.message ?? '', /Invalid ELF magic/);
  assert.ok(!r.excerpt.includes('RLIMIT_NOFILE'));
  assert.ok(r.excerpt.includes('Invalid ELF magic'));
  const d = reasonsFromCriuLog('(00.1) Error (criu/cgroup.c:1): cgroupd: recv req error: File exists\n', 'dump');
  assert.deepEqual(d.reasons.map((x) => x.code), ['DumpFailed']);
});

void test('a log without error lines yields the fallback and its tail as excerpt', () => {
  const r = reasonsFromCriuLog('line one\nline two\n', 'dump');
  assert.deepEqual(r.reasons.map((x) => x.code), ['DumpFailed']);
  assert.equal(r.excerpt, 'line one\nline two');
});

void test('excerpt is capped', () => {
  const log = Array.from({ length: 200 }, (_, i) => `Error (criu/x.c:${i}): something odd number ${i} happened here`).join('\n');
  const r = reasonsFromCriuLog(log, 'dump');
  assert.ok(Buffer.byteLength(r.excerpt) <= EXCERPT_CAP + 4, `excerpt ${Buffer.byteLength(r.excerpt)} bytes`);
  assert.ok(r.excerpt.endsWith('...'));
});

void test('uprobes and a missing CAP_SYS_RESOURCE get their own codes, not DumpFailed', () => {
  assert.deepEqual(codes('(00.1) Error (criu/proc_parse.c:614): PID 75 has uprobes vma. Consider using --allow-uprobes.'), ['Uprobes']);
  assert.deepEqual(codes('Error (criu/image.c:99): Dumped with --allow-uprobes. Need to set it on restore as well.', 'restore'), ['Uprobes']);
  const priv = reasonsFromCriuLog("(00.151030) Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted", 'dump').reasons;
  assert.deepEqual(priv.map((r) => r.code), ['InsufficientPrivileges']);
  assert.match(priv[0]?.hint ?? '', /CAP_SYS_RESOURCE/);
  assert.deepEqual(codes("Error (criu/mount.c:1027): mnt: 143:./zdtm/static/x.test doesn't have a proper root mount"), ['UnsupportedMount']);
  assert.deepEqual(codes('Error (criu/mount.c:1): mnt: Mount 218 ./a/dst_b (master_id: 4 shared_id: 0) has unreachable sharing. Try --enable-external-masters.'), ['UnsupportedMount']);
  assert.deepEqual(codes("Error (criu/files-reg.c:1): Can't create link remap for /zdtm/static/overmount_file.test/foo. Use link-remap option."), ['LinkRemapNeeded']);
  assert.deepEqual(codes('Error (criu/files.c:1): Open files on overmounted mounts are not supported yet; mount=77 fd=4 path=/a/overmounted/file'), ['UnsupportedFile']);
  assert.deepEqual(codes("Error (criu/cr-dump.c:1): Can't dump the 79 thread with a pending SIGTRAP."), ['Ptraced']);
  assert.deepEqual(codes('Error (criu/sk-unix.c:1): unix: Found a closed in-flight socket to 0x1783f8'), ['UnsupportedSocket']);
  assert.deepEqual(codes('Error (criu/sk-unix.c:1): unix: Non-empty write queue on an in-flight socket 0x177cf4'), ['UnsupportedSocket']);
  assert.deepEqual(codes('Error (criu/sk-inet.c:1): inet: Connected TCP socket in image', 'restore'), ['TCPEstablished']);
  assert.deepEqual(codes("Error (criu/namespaces.c:1): Can't dump nested time namespace for 80"), ['NestedNamespace']);
  assert.deepEqual(codes("Error (criu/sk-inet.c:1): inet: Can't dump corked dgram socket 1b9f8f"), ['UnsupportedSocket']);
  const dev = reasonsFromCriuLog("5: Error (criu/sk-inet.c:1030): inet: couldn't find ifindex for zdtmbr0", 'restore').reasons;
  assert.deepEqual(dev.map((r) => `${r.code}: ${r.message}`), ['NetworkDeviceMissing: a socket is bound to network device zdtmbr0, which the target network namespace does not have']);
});
