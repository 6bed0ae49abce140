// Where the repository is, for the test bed and everything that drives it (tests, hack/demo.ts, bench/).

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CHART_DIR = join(ROOT, 'charts', 'migprobe');
