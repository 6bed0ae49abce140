#!/usr/bin/env node
// The `kubectl migprobe` plugin (kubectl finds kubectl-migprobe on PATH): the compiled plugin when it was
// built (npm run build), else the TypeScript source run directly by Node 24's type stripping.
import { existsSync } from 'node:fs';

const built = new URL('../dist/plugin/main.js', import.meta.url);
await import(existsSync(built) ? built.href : new URL('../src/plugin/main.ts', import.meta.url).href);
