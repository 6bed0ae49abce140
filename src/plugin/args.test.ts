import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HELP, PLUGIN_FLAGS, UsageError, parseDuration, parseLabelSelector, parsePluginArgs } from './args.ts';

function usage(argv: string[], re: RegExp): UsageError {
  let caught: unknown;
  try {
    parsePluginArgs(argv);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof UsageError, `${argv.join(' ')} should be a usage error`);
  assert.match(caught.message, re);
  return caught;
}

test('check: pod, target, container, wait, timeout; global flags anywhere, in every spelling', () => {
  const p = parsePluginArgs(['-n', 'team', 'check', 'web', '--to', 'node-b', '-c', 'app', '--wait', '--timeout=90s', '--context', 'prod', '-ojson']);
  assert.deepEqual(p.globals, { namespace: 'team', context: 'prod', output: 'json' });
  assert.deepEqual(p.command, { kind: 'check', pod: 'web', targetNode: 'node-b', container: 'app', wait: true, timeoutMs: 90_000, mode: 'Check' });
  const q = parsePluginArgs(['check', '--namespace=x', 'web', '--to=node-b', '--kubeconfig', '/k', '-o', 'yaml']);
  assert.deepEqual(q.globals, { namespace: 'x', kubeconfig: '/k', output: 'yaml' });
  assert.equal((q.command as { timeoutMs: number }).timeoutMs, 300_000, 'default --timeout 5m');
  assert.deepEqual(parsePluginArgs(['check', 'web', '--to', 'b', '-nteam']).globals, { namespace: 'team' });
  const r = parsePluginArgs(['check', 'web', '--to', 'b', '--mode', 'RestoreOnly', '--checkpoint', '/var/lib/kubelet/checkpoints/x.tar']);
  assert.equal((r.command as { mode: string }).mode, 'RestoreOnly');
  assert.equal((r.command as { checkpoint?: string }).checkpoint, '/var/lib/kubelet/checkpoints/x.tar');
});

test('drain-check: default name and timeout, targets by selector or by name', () => {
  assert.deepEqual(parsePluginArgs(['drain-check', 'node-a']).command, { kind: 'drain-check', node: 'node-a', name: 'drain-node-a', timeoutMs: 600_000 });
  const s = parsePluginArgs(['drain-check', 'node-a', '--to', 'pool=general,zone in (a, b),!spot', '--name', 'mine', '--timeout', '1h30m']);
  assert.deepEqual(s.command, {
    kind: 'drain-check',
    node: 'node-a',
    name: 'mine',
    timeoutMs: 5_400_000,
    targets: {
      nodeSelector: {
        matchLabels: { pool: 'general' },
        matchExpressions: [
          { key: 'zone', operator: 'In', values: ['a', 'b'] },
          { key: 'spot', operator: 'DoesNotExist' },
        ],
      },
    },
  });
  assert.deepEqual((parsePluginArgs(['drain-check', 'a', '--to-nodes', 'b, c']).command as { targets: unknown }).targets, { nodeNames: ['b', 'c'] });
});

test('label selectors as kubectl writes them', () => {
  assert.deepEqual(parseLabelSelector('--to', 'a==1,b!=2,c,kubernetes.io/arch notin (arm64)'), {
    matchLabels: { a: '1' },
    matchExpressions: [
      { key: 'b', operator: 'NotIn', values: ['2'] },
      { key: 'c', operator: 'Exists' },
      { key: 'kubernetes.io/arch', operator: 'NotIn', values: ['arm64'] },
    ],
  });
  for (const bad of ['a=1,', 'zone in ()', '=x', 'a b c', 'a in (x']) assert.throws(() => parseLabelSelector('--to', bad), /--to .*for example --to/);
});

test('durations need a unit', () => {
  assert.equal(parseDuration('--timeout', '250ms'), 250);
  assert.equal(parseDuration('--timeout', '1.5m'), 90_000);
  for (const bad of ['90', '5 m', '', '0s', 'm', '5d']) assert.throws(() => parseDuration('--timeout', bad), /--timeout 5m/);
});

test('help, per command and top-level; version', () => {
  assert.deepEqual(parsePluginArgs(['--help']).command, { kind: 'help' });
  assert.deepEqual(parsePluginArgs(['drain-check', '-h']).command, { kind: 'help', topic: 'drain-check' });
  assert.deepEqual(parsePluginArgs(['help', 'nodes']).command, { kind: 'help', topic: 'nodes' });
  assert.deepEqual(parsePluginArgs(['version']).command, { kind: 'version' });
});

test('usage errors name a real flag and the command whose help to read', () => {
  assert.equal(usage(['check', 'web'], /--to NODE/).command, 'check');
  usage(['check', '--to', 'b'], /needs a POD/);
  usage(['check', 'a', 'b', '--to', 'c'], /one a POD name/);
  usage(['check', 'web', '--to', 'b', '--mode', 'RestoreOnly'], /--checkpoint PATH/);
  usage(['check', 'web', '--to', 'b', '--checkpoint', '/x'], /--mode RestoreOnly/);
  usage(['check', 'web', '--to', 'b', '--mode', 'restore'], /--mode Check or --mode RestoreOnly/);
  usage(['check', 'web', '--to', 'b', '--to-nodes', 'c'], /--to-nodes is not a flag of check/);
  usage(['drain-check', 'a', '--wait'], /--wait is not a flag of drain-check/);
  usage(['drain-check', 'a', '--to', 'x=y', '--to-nodes', 'b'], /either by --to SELECTOR or by --to-nodes/);
  usage(['drain-check', 'a', '--to-nodes', ','], /--to-nodes node-b/);
  usage(['nodes', 'extra'], /takes no argument/);
  usage(['nodes', '-o', 'table'], /-o json, -o yaml or -o wide/);
  usage(['nodes', '--namespace'], /--namespace needs a value/);
  usage(['nodes', '--wat'], /unknown flag --wat/);
  usage(['frobnicate'], /unknown command "frobnicate": use check, drain-check or nodes/);
  usage([], /no command given/);
  usage(['check', 'web', '--to', 'b', '--wait=yes'], /--wait takes no value/);
});

test('every flag the help texts name is a real flag', () => {
  for (const text of Object.values(HELP)) {
    for (const m of text.matchAll(/(?<![\w-])(--[a-z][a-z-]*|-[a-z])\b/g)) assert.ok(PLUGIN_FLAGS.has(m[1] ?? ''), `help names ${m[1]}, which the parser does not know`);
  }
});
