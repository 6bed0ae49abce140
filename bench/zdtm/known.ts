// Known causes of the disagreements the conformance bench (bench/conformance.ts) found and could not fix in the
// engine: zdtm static test name -> why migprobe's verdict differs from the real C/R. Printed in the report.

const EXTERNAL_MOUNT_OPTS =
  'CRIU restores it only with the external-mount options its .desc gives (--external mnt[...], --ext-mount-map, ' +
  '--enable-external-masters), which fit only when the same mount exists on the target; migprobe declares external ' +
  'only the binds a runtime set up (volumes, hostPaths) and names the cause (UnsupportedMount).';

export const KNOWN: Readonly<Record<string, string>> = {
  bridge:
    'the test makes a bridge (zdtmbr0) in its own network namespace and binds a socket to it; zdtm\'s CRIU dumps ' +
    'that namespace with the test, migprobe restores as runc and containerd do, into the network namespace the ' +
    'target gives (empty_ns=NET), which has no zdtmbr0 (NetworkDeviceMissing). A container migration loses the ' +
    'device as well.',
  mnt_ext_auto: EXTERNAL_MOUNT_OPTS,
  mnt_ext_manual: EXTERNAL_MOUNT_OPTS,
  mnt_ext_master: EXTERNAL_MOUNT_OPTS,
  mnt_ext_multiple: EXTERNAL_MOUNT_OPTS,
  mnt_root_ext: EXTERNAL_MOUNT_OPTS,
  mntns_deleted:
    'a bind mount whose source directory was deleted; migprobe declares a host bind external (as a runtime\'s ' +
    'volume) and the sandbox cannot bind a path that no longer exists (`Can\'t re-create deleted file`), while ' +
    'zdtm\'s CRIU recreates it inside the dumped mount namespace.',
  'socket-tcpbuf-local':
    'a loopback TCP connection with unsent data in its send queue; in the restore sandbox (the network ' +
    'namespace the target gives, tasks left stopped) CRIU\'s send of the not-sent data fails (`Can\'t restore ' +
    'not-sent send queue data ... Broken pipe`), while zdtm restores the dumped namespace. Cause in the sandbox not ' +
    'found yet; dropping every packet in the sandbox\'s namespace during the restore (nftables) made the restore ' +
    'hang instead (tried 2026-12-02).',
  'socket-tcpbuf6-local': 'the IPv6 twin of socket-tcpbuf-local, same failure.',
  pty03:
    'the test runs in a user namespace of its own (uns flavor); migprobe\'s dump archives the tmpfs mounts CRIU ' +
    'cannot declare external, and CRIU\'s tar of one fails inside that user namespace (`Can\'t dump tmpfs content`, ' +
    'tar exit 2); zdtm declares the test\'s /dev external. Not fixed.',
  vt:
    'a virtual console: the real restore failed in the full run and in its rerun (`tty: Corrupted master peer`) ' +
    'while the sandboxed restore check passed (a false "migratable"), and passed in a third run: flaky here. ' +
    'migprobe now refuses virtual consoles in the preflight (DeviceFile), so it errs on "not migratable".',
};
