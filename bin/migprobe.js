#!/usr/bin/env node
// The `migprobe` command: the compiled CLI when it was built (npm run build), else the TypeScript source run
// directly by Node 24's type stripping.
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli/main.js', import.meta.url);
await import(existsSync(built) ? built.href : new URL('../src/cli/main.ts', import.meta.url).href);
