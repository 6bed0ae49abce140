// The README's generated sections (CRD reference, reason codes) must match their sources, and the README
// must open with the two commands CI and users run.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { README, ROOT, renderReadme } from '../../hack/docs.ts';
import { REASON_CODES } from '../../src/verdict.ts';

test('README generated sections match crds/ and the reason catalog (run `node hack/docs.ts`)', () => {
  const readme = readFileSync(README, 'utf8');
  assert.equal(readme, renderReadme(readme));
  for (const code of REASON_CODES) assert.ok(readme.includes(`| \`${code}\` |`), `README documents ${code}`);
});

test('.ci/run calls the README test command', () => {
  const readme = readFileSync(README, 'utf8');
  const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
  assert.match(readme, /bash hack\/test\.sh/);
  assert.match(readme, /bash hack\/demo\.sh/);
  assert.match(ci, /bash hack\/test\.sh/);
});
