import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { controllerLogger, createLogger, probeLogger } from './logger.ts';

void test('JSON lines carry ts, level, message, component, and the child keys', async () => {
  const stream = new PassThrough();
  const lines: string[] = [];
  stream.on('data', (c: Buffer) => lines.push(...c.toString().split('\n').filter(Boolean)));
  const root = createLogger({ component: 'controller', level: 'info', stream });
  const log = probeLogger(controllerLogger(root, 'migrationprobe'), 'default/p1');
  log.info('phase changed', { phase: 'Dumping' });
  log.debug('not shown at info');
  await new Promise((r) => setImmediate(r));
  assert.equal(lines.length, 1);
  const rec = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
  assert.equal(rec.message, 'phase changed');
  assert.equal(rec.level, 'info');
  assert.equal(rec.component, 'controller');
  assert.equal(rec.controller, 'migrationprobe');
  assert.equal(rec.probe, 'default/p1');
  assert.equal(rec.phase, 'Dumping');
  assert.match(String(rec.ts), /^\d{4}-\d\d-\d\dT/);
  assert.equal('timestamp' in rec, false);
});
