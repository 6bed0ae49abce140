import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressesFromNetworkStatus, imageRefFromConfig, specMaskedPaths, specMountSources } from './checkpoint.ts';

test('spec.dump mounts map destinations to sources', () => {
  const spec = { mounts: [{ destination: '/data', source: '/host/data', type: 'bind' }, { destination: '/proc', type: 'proc' }] };
  assert.deepEqual([...specMountSources(spec)], [['/data', '/host/data']]);
  assert.equal(specMountSources(null).size, 0);
});

test('network.status addresses are found wherever the CNI result keeps them', () => {
  const st = [{ result: { ips: [{ address: '10.88.0.7/16', gateway: '10.88.0.1' }, { address: 'fd00::7/64' }], interfaces: [{ name: 'eth0' }] } }];
  assert.deepEqual(addressesFromNetworkStatus(st), ['10.88.0.7/16', 'fd00::7/64']);
  assert.deepEqual(addressesFromNetworkStatus({ a: '127.0.0.1/8' }), []);
});

test('image ref from config.dump', () => {
  assert.equal(imageRefFromConfig({ rootfsImageName: 'docker.io/library/busybox:latest' }), 'docker.io/library/busybox:latest');
  assert.equal(imageRefFromConfig({ rootfsImageRef: 'sha256:abc' }), 'sha256:abc');
  assert.equal(imageRefFromConfig({}), undefined);
});

test('masked paths from spec.dump', () => {
  assert.deepEqual([...specMaskedPaths({ linux: { maskedPaths: ['/proc/kcore', 7] } })], ['/proc/kcore']);
  assert.equal(specMaskedPaths({}).size, 0);
});
