// CRIU log -> reasons. Pure.
//
// CRIU prints errors as `(00.012345) Error (criu/sk-unix.c:874): unix: External socket is used. ...`
// (the timestamp only at -v4 and above; a `  1234: ` PID prefix in multi-process phases of a restore).
// Each known error line maps to a stable code; known noise is dropped; when nothing known is found the
// reason is DumpFailed / RestoreFailed carrying the first error line. The excerpt is the error lines,
// capped at EXCERPT_CAP bytes (or the log's tail when it has no error line at all).

import type { Reason, ReasonCode } from '../verdict.ts';
import { IN_FLIGHT_HINT, reason } from '../reasons.ts';

export const EXCERPT_CAP = 2048;

/** Lines CRIU prints as errors that say nothing about the workload (measured on this machine). */
const NOISE: readonly RegExp[] = [
  /rlimit: Can't setup RLIMIT_NOFILE/,
  /iptables-restore -V failed/,
  /Hardware breakpoints don't seem to work/,
  /cgroupd: recv req error: File exists/,
  // the second line of the in-flight TCP error: the first one is the reason
  /In-flight connections can be ignored with/,
];

interface Rule {
  re: RegExp;
  code: ReasonCode;
  /** Builds the message; `m` is the regexp match on the error text (prefix stripped). */
  message?: (m: RegExpMatchArray, text: string) => string;
  hint?: (m: RegExpMatchArray) => string | undefined;
}

const RULES: readonly Rule[] = [
  { re: /External socket is used/, code: 'ExternalUnixSocket' },
  { re: /Can't dump half of stream unix connection/, code: 'ExternalUnixSocket',
    hint: () =>
      'the peer is outside the container even with --ext-unix-sk: CRIU cannot carry half of a stream connection; ' +
      'close it before the migration' },
  { re: /Can't dump name-less external socket/, code: 'ExternalUnixSocket',
    hint: () => 'CRIU cannot carry an external unix socket without a name; close it before the migration' },
  { re: /Connected TCP socket, consider using --tcp-established/, code: 'TCPEstablished' },
  { re: /In-flight connection/, code: 'TCPEstablished',
    hint: () => IN_FLIGHT_HINT },
  { re: /Connected TCP socket in image/, code: 'TCPEstablished',
    hint: () =>
      'the images hold an established TCP connection but the restore was given neither --tcp-established nor ' +
      '--tcp-close: check with --tcp-established or --tcp-close (CLI; options.tcpEstablished / options.tcpClose), ' +
      'or close the connection before the migration' },
  { re: /Can't connect inet socket back/, code: 'TCPEstablished',
    hint: () =>
      'the restored TCP connection needs the container IP address in the target network namespace; ' +
      'check that the restore sandbox (or the target pod network) carries it' },
  { re: /send_fds failed|Can't retrieve FDs from socket/, code: 'IoUring',
    message: (_m, text) => `CRIU could not take the file descriptors out of a task (as with io_uring): ${text}` },
  { re: /Some file locks are hold by dumping tasks/, code: 'FileLocks' },
  { re: /Can't dump ghost file (.+) of (\d+) size, increase limit/, code: 'GhostFileTooLarge',
    message: (m) => `deleted-but-open file ${m[1] ?? '?'} uses ${m[2] ?? '?'} bytes, over the ghost limit`,
    hint: (m) => `raise options.ghostLimitBytes (CLI --ghost-limit) above ${m[2] ?? 'the file size'}, or close the file` },
  { re: /\/secretmem/, code: 'MemfdSecret',
    message: (_m, text) => `CRIU cannot read a memfd_secret area: ${text}` },
  { re: /has bad size (\d+) \(expect (\d+)\)/, code: 'RootfsMismatch' },
  { re: /^cpu: |CPU instruction capabilities do not match|CPU xfeatures has unsupported bits|CPU capabilities do not match|xsave (max )?size mismatch|FPU feature required by image/,
    code: 'CPUIncompatible' },
  { re: /Time namespaces are not supported|Unable to create a new time namespace|UFFD is not supported|Non-cooperative UFFD is not supported|pidfd_(open|getfd) syscall is not supported|clone3\(\) with set_tid not supported|apparmor LSM specified but apparmor not supported|selinux LSM specified but selinux not supported|Nested mount namespaces are not supported/,
    code: 'KernelFeatureMissing' },
  { re: /Can't dump file (\d+) of that type \[(\d+)\] \((chr|blk) ([^)]*)\)/, code: 'DeviceFile' },
  { re: /Can't dump file (\d+) of that type \[(\d+)\] \(anon \[io_uring\]\)/, code: 'IoUring' },
  { re: /Can't dump file (\d+) of that type \[(\d+)\] \(anon ([^)]*)\)/, code: 'UnsupportedFile',
    message: (m) => `CRIU cannot dump fd ${m[1] ?? '?'}: anon inode ${m[3] ?? '?'}` },
  { re: /Unknown socket collected|Sockets \(family \d+ proto \d+\) are not collected|Unknown pair family|Unsupported socket family|Unsupported proto \d+ for socket|Only stream, dgram and raw are supported/,
    code: 'UnsupportedSocket' },
  { re: /has uprobes vma\. Consider using --allow-uprobes|Dumped with --allow-uprobes\. Need to set it on restore/, code: 'Uprobes' },
  { re: /Can't get rlimit (\d+): Operation not permitted/, code: 'InsufficientPrivileges',
    message: (_m, text) => `CRIU could not read a task's rlimits (it lacks CAP_SYS_RESOURCE for a task of another user): ${text}` },
  { re: /couldn't find ifindex for (\S+)/, code: 'NetworkDeviceMissing',
    message: (m) => `a socket is bound to network device ${m[1] ?? '?'}, which the target network namespace does not have` },
  { re: /doesn't have a proper root mount|has unreachable sharing|Failed to copy sharing from/,
    code: 'UnsupportedMount', message: (_m, text) => `CRIU cannot carry a mount of the container: ${text}` },
  { re: /Can't create link remap for (.+)\. Use link-remap option/, code: 'LinkRemapNeeded',
    message: (m) => `CRIU can reach the unlinked open file ${m[1] ?? '?'} only with --link-remap` },
  { re: /Open files on overmounted mounts are not supported yet; mount=\d+ fd=(\d+) path=(.+)$/, code: 'UnsupportedFile',
    message: (m) => `fd ${m[1] ?? '?'} is open on ${m[2] ?? '?'}, a file under a mount that another mount now covers; CRIU cannot dump it` },
  { re: /Can't dump the (\d+) thread with a pending SIGTRAP/, code: 'Ptraced',
    message: (m) => `thread ${m[1] ?? '?'} has a pending SIGTRAP (a breakpoint or trap not yet handled); CRIU cannot dump it`,
    hint: () => 'let the workload handle the trap (detach the debugger that set the breakpoint) and probe again' },
  { re: /Non-empty write queue on an in-flight socket|Found a closed in-flight socket/, code: 'UnsupportedSocket',
    message: (_m, text) => `a listening unix socket has connections not yet accepted that CRIU cannot carry: ${text}`,
    hint: () => 'probe again once the workload has accepted (or the peers have given up) its pending unix connections' },
  { re: /Can't dump nested (time|time_for_children) namespace for (\d+)/, code: 'NestedNamespace',
    message: (m) => `task ${m[2] ?? '?'} has a nested ${m[1] === 'time' ? 'time' : 'time (for its children)'} namespace, which CRIU cannot dump` },
  { re: /Can't dump corked dgram socket/, code: 'UnsupportedSocket',
    message: (_m, text) => `a datagram socket is corked (data held back with UDP_CORK or MSG_MORE): ${text}`,
    hint: () => 'probe again once the workload has flushed its corked datagram socket' },
  { re: /Unseizable non-zombie \d+ found|Unable to (seize|interrupt) task|is already being traced/, code: 'Ptraced',
    message: (_m, text) => `CRIU could not attach to a task: ${text.replace(/ \d+ found/, ' found')}`,
    hint: () => 'CRIU could not attach to a task: detach any debugger or tracer and probe again' },
];

/** An error text CRIU prints that says nothing about the workload. */
export function isNoise(text: string): boolean {
  return NOISE.some((re) => re.test(text));
}

/** `Error (file:line): text` -> text, or undefined when the line is not an error line. */
export function errorText(line: string): string | undefined {
  const m = /Error \([^)]*\):\s?(.*)$/.exec(line);
  return m === null ? undefined : (m[1] ?? '').trim();
}

function capExcerpt(lines: readonly string[]): string {
  let out = '';
  for (const l of lines) {
    const next = out === '' ? l : `${out}\n${l}`;
    if (Buffer.byteLength(next) > EXCERPT_CAP) {
      const room = EXCERPT_CAP - Buffer.byteLength(out) - 5;
      if (room > 20) out = `${out}${out === '' ? '' : '\n'}${l.slice(0, room)}`;
      return `${out}\n...`;
    }
    out = next;
  }
  return out;
}

/** Map a CRIU log to reasons (all of them, deduplicated) and an excerpt of its error lines. */
export function reasonsFromCriuLog(log: string, phase: 'dump' | 'restore'): { reasons: Reason[]; excerpt: string } {
  const lines = log.split('\n').map((l) => l.replace(/\s+$/, ''));
  const errorLines: string[] = [];
  const reasons: Reason[] = [];
  const seen = new Set<string>();
  let firstUnknown: string | undefined;
  for (const line of lines) {
    const text = errorText(line);
    if (text === undefined) continue;
    if (isNoise(text)) continue;
    errorLines.push(line.trim());
    let matched = false;
    for (const rule of RULES) {
      const m = rule.re.exec(text);
      if (m === null) continue;
      matched = true;
      const message = rule.message?.(m, text) ?? `CRIU ${phase}: ${text}`;
      const key = `${rule.code}\u0000${message}`;
      if (!seen.has(key)) {
        seen.add(key);
        reasons.push(reason(rule.code, message, rule.hint?.(m), phase));
      }
      break;
    }
    if (!matched && firstUnknown === undefined) firstUnknown = text;
  }
  // CPU mismatches and failed fd transfers print several lines; one reason says it.
  const deduped = collapse(collapse(reasons, 'CPUIncompatible'), 'IoUring');
  if (deduped.length === 0) {
    const code = phase === 'dump' ? 'DumpFailed' : 'RestoreFailed';
    const what = firstUnknown ?? 'no error line in its log';
    deduped.push(reason(code, `criu ${phase} failed: ${what}`));
  }
  const excerpt = errorLines.length > 0 ? capExcerpt(errorLines) : tail(lines, EXCERPT_CAP);
  return { reasons: deduped, excerpt };
}

function collapse(reasons: Reason[], code: ReasonCode): Reason[] {
  const same = reasons.filter((r) => r.code === code);
  if (same.length <= 1) return reasons;
  const first = same[0];
  if (first === undefined) return reasons;
  const merged: Reason = { ...first, message: same.map((r) => r.message).join('; ') };
  const out: Reason[] = [];
  let placed = false;
  for (const r of reasons) {
    if (r.code !== code) out.push(r);
    else if (!placed) {
      out.push(merged);
      placed = true;
    }
  }
  return out;
}

function tail(lines: readonly string[], cap: number): string {
  const out: string[] = [];
  let size = 0;
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i] ?? '';
    if (l === '' && out.length === 0) continue;
    if (size + l.length + 1 > cap) break;
    out.unshift(l);
    size += l.length + 1;
  }
  return out.join('\n');
}
