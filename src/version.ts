// migprobe's version, from package.json (the CLI prints it; the agent publishes it in MigrationNode status).

import { readFile } from 'node:fs/promises';

/** package.json's version; src/version.ts and dist/version.js both sit one level below package.json. */
export async function migprobeVersion(): Promise<string> {
  try {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
