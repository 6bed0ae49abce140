// Net sysctls carried into the restore sandbox (net-sysctls.ts): what is read, what a manifest may hold, what is written.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NET_SYSCTLS, applyNetSysctls, parseNetSysctls, readNetSysctls, sysctlsFromCat } from './net-sysctls.ts';
import type { RunOptions, RunResult } from './exec.ts';

void test('sysctlsFromCat keeps the well-formed values, in NET_SYSCTLS order', () => {
  assert.deepEqual(NET_SYSCTLS, ['net.ipv4.ping_group_range', 'net.ipv4.ip_unprivileged_port_start']);
  assert.deepEqual(sysctlsFromCat('0\t2147483647\n1024\n'), { 'net.ipv4.ping_group_range': '0\t2147483647', 'net.ipv4.ip_unprivileged_port_start': '1024' });
  assert.deepEqual(sysctlsFromCat('1 0\n'), { 'net.ipv4.ping_group_range': '1\t0' });
  assert.deepEqual(sysctlsFromCat('garbage\n99999999\n'), {});
});

void test('parseNetSysctls refuses unknown names and malformed values (the manifest comes from a peer)', () => {
  assert.deepEqual(parseNetSysctls(undefined), {});
  assert.deepEqual(parseNetSysctls({ 'net.ipv4.ping_group_range': '0\t2147483647' }), { 'net.ipv4.ping_group_range': '0\t2147483647' });
  const bad: unknown[] = [
    [],
    'x',
    { 'kernel.core_pattern': '|/bin/sh' },
    { 'net.ipv4.ping_group_range': '0 1\n' },
    { 'net.ipv4.ping_group_range': '0\t99999999999' },
    { 'net.ipv4.ping_group_range': 7 },
    { 'net.ipv4.ip_unprivileged_port_start': '70000' },
    { ['__proto__']: '1' },
    JSON.parse('{"__proto__": "1"}'),
  ];
  for (const b of bad) assert.throws(() => parseNetSysctls(b), /netSysctls/, JSON.stringify(b));
});

void test('read through nsenter in the container\'s namespace; written with tee, one file each, in the sandbox\'s', async () => {
  const calls: { cmd: string; args: readonly string[]; input?: string }[] = [];
  const runner = (cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> => {
    calls.push({ cmd, args, ...(typeof opts?.input === 'string' ? { input: opts.input } : {}) });
    return Promise.resolve({ exitCode: 0, signal: null, stdout: '0\t2147483647\n1024\n', stderr: '', timedOut: false, durationMs: 1 });
  };
  const got = await readNetSysctls('/proc/42/ns/net', runner);
  assert.equal(got['net.ipv4.ping_group_range'], '0\t2147483647');
  assert.deepEqual(calls[0]?.args, ['--net=/proc/42/ns/net', '--', 'cat', '/proc/sys/net/ipv4/ping_group_range', '/proc/sys/net/ipv4/ip_unprivileged_port_start']);
  calls.length = 0;
  await applyNetSysctls('/var/run/netns/sb', { 'net.ipv4.ping_group_range': '0\t2147483647' }, runner);
  assert.deepEqual(calls, [{ cmd: 'nsenter', args: ['--net=/var/run/netns/sb', '--', 'tee', '/proc/sys/net/ipv4/ping_group_range'], input: '0\t2147483647\n' }]);
  await assert.rejects(applyNetSysctls('/var/run/netns/sb', { 'kernel.core_pattern': 'x' }, runner), /not a sysctl migprobe carries/);
});
