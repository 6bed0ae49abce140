// Runs one dump check in its own process, for the test that kills this process mid-dump (a dying agent).
// Usage: node test/engine/dump-child.ts <containerd address> <container id> <work dir>

import { resolveContainer } from '../../src/engine/container.ts';
import { dumpCheck } from '../../src/engine/dump.ts';
import { subjectFromContainer, addressesOf } from '../../src/engine/subject.ts';
import { DEFAULT_PROBE_OPTIONS } from '../../src/engine/api.ts';

const [address, id, workDir] = process.argv.slice(2);
if (address === undefined || id === undefined || workDir === undefined) throw new Error('usage: dump-child.ts <address> <id> <workdir>');
const ci = await resolveContainer({ containerId: id, containerdAddress: address });
await dumpCheck({
  subject: subjectFromContainer(ci),
  options: DEFAULT_PROBE_OPTIONS,
  workDir,
  criuVersion: 'test',
  manifest: { rootfs: { lowerdirs: ci.rootfs.lowerdirs }, addresses: addressesOf(ci), fileDigests: [] },
  hooks: { onCriuStarted: (pid) => process.stdout.write(`criu ${pid}\n`) },
});
process.stdout.write('done\n');
