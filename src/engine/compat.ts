// Node-pair compatibility: can a checkpoint taken on `source` restore on `target`? Pure.
//
// Rules (documented here and in the README):
// - ArchMismatch: `arch` differs (checkpoints never cross architectures).
// - CRIUTooOld: either side below CRIU_MIN_VERSION.
// - KernelFeatureMissing: a `criu check --feature` that is true on the source and false on the target, for
//   every feature except those that only the dumping side uses (DUMP_ONLY_FEATURES).
// - KernelMismatch: only a kernel DOWNGRADE (target major.minor older than the source's). A newer kernel keeps
//   the user ABI; an older one may lack syscalls, flags or /proc fields the workload already detected and uses.
//   Patch level and distribution suffixes are ignored. A same-or-newer kernel is never a blocker by itself.
// - InsufficientMemory: target MemAvailable < workload RSS + margin, margin = 64 MiB + 10% of the RSS.
// - CPUIncompatible: a CPU flag of the source missing on the target, ignoring flags that describe the kernel,
//   the hypervisor or vulnerability mitigations rather than instructions a program can execute
//   (NON_ISA_FLAGS). CRIU's own --cpu-cap check on the images (done by the restore check) complements this.

import type { NodeFacts } from './api.ts';
import type { Reason } from '../verdict.ts';
import { DUMP_ONLY_FEATURES, criuTooOld } from './criu.ts';
import { reason } from '../reasons.ts';

export const MEMORY_MARGIN_FIXED = 64 * 1024 * 1024;
export const MEMORY_MARGIN_RATIO = 0.1;

/** Flags that are not instruction set features: kernel bookkeeping, hypervisor, power, mitigations. */
const NON_ISA_FLAGS: ReadonlySet<string> = new Set([
  'hypervisor', 'constant_tsc', 'nonstop_tsc', 'tsc_known_freq', 'tsc_reliable', 'tsc_adjust', 'tsc_deadline_timer',
  'xtopology', 'cpuid', 'cpuid_fault', 'rep_good', 'nopl', 'arch_perfmon', 'pebs', 'bts', 'ht', 'tm', 'tm2', 'acpi',
  'dtes64', 'ds_cpl', 'smx', 'est', 'tpr_shadow', 'flexpriority', 'ept', 'vpid', 'ept_ad', 'vnmi', 'arat', 'pln',
  'pts', 'dtherm', 'ida', 'pti', 'ibrs', 'ibpb', 'stibp', 'ssbd', 'md_clear', 'flush_l1d', 'arch_capabilities',
  'x2apic', 'apic', 'aperfmperf', 'epb', 'invpcid_single', 'ibrs_enhanced', 'amd_ssbd', 'virt_ssbd', 'amd_stibp',
  'ibpb_brtype', 'retbleed', 'srso', 'user_shstk', 'vmx', 'svm', 'vme', 'de', 'pse', 'pae', 'mce', 'mca', 'mtrr',
  'pge', 'pat', 'pse36', 'pdpe1gb', 'pcid', 'invpcid', 'tsc', 'msr', 'fxsr_opt', 'extd_apicid', 'nonstop_tsc_s3',
  'xtpr', 'pdcm', 'dca', 'monitor', 'ss', 'pbe', 'syscall', 'nx', 'lm', 'intel_pt', 'vmmcall', 'decodeassists',
  'flushbyasid', 'lbrv', 'npt', 'nrip_save', 'pausefilter', 'pfthreshold', 'svm_lock', 'tsc_scale', 'vmcb_clean',
  'v_vmsave_vmload', 'vgif', 'avic', 'v_spec_ctrl', 'perfctr_core', 'perfctr_nb', 'perfctr_llc', 'topoext',
  'skinit', 'wdt', 'osvw', 'ibs', 'cpb', 'hw_pstate', 'proc_feedback', 'sme', 'sev', 'sev_es', 'tce', 'lwp',
  'overflow_recov', 'succor', 'smca', 'split_lock_detect', 'bus_lock_detect', 'flush_l1d', 'sgx', 'sgx_lc',
  'tme', 'pconfig', 'pks', 'hfi', 'la57', 'umip', 'cat_l3', 'cat_l2', 'cdp_l3', 'cdp_l2',
  'mba', 'cqm', 'cqm_llc', 'cqm_occup_llc', 'cqm_mbm_total', 'cqm_mbm_local', 'rdt_a', 'intel_ppin', 'ssbd',
  'tsc_deadline', 'hwp', 'hwp_notify', 'hwp_act_window', 'hwp_epp', 'hwp_pkg_req',
  'tsx_force_abort', 'tsxldtrk', 'zero_fcs_fds', 'fdp_excptn_only', 'ibt', 'x2avic', 'vnmi', 'flush_l1d',
]);

function isaFlag(flag: string): boolean {
  if (NON_ISA_FLAGS.has(flag)) return false;
  if (/^(hwp|ibrs|ibpb|stibp|vmx_|svm_|v_|pfthreshold|cqm|rdt|cat_|mba|sev|sme|tsc_|perfctr|arch_lbr|amd_|virt_)/.test(flag))
    return false;
  return true;
}

function kernelMajorMinor(release: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (m === null) return undefined;
  return [Number(m[1]), Number(m[2])];
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

export function memoryNeeded(workloadRssBytes: number): number {
  return workloadRssBytes + MEMORY_MARGIN_FIXED + Math.ceil(workloadRssBytes * MEMORY_MARGIN_RATIO);
}

export function compareFacts(source: NodeFacts, target: NodeFacts, workloadRssBytes: number): Reason[] {
  const out: Reason[] = [];
  const tgt = target.hostname === '' ? 'the target' : `target ${target.hostname}`;
  const src = source.hostname === '' ? 'the source' : `source ${source.hostname}`;

  if (source.arch !== target.arch) {
    out.push(reason('ArchMismatch', `${src} is ${source.arch}, ${tgt} is ${target.arch}`));
  }

  const oldSrc = criuTooOld(source.criuVersion, src);
  if (oldSrc !== undefined) out.push({ ...oldSrc, phase: 'compat' });
  const oldTgt = criuTooOld(target.criuVersion, tgt);
  if (oldTgt !== undefined) out.push({ ...oldTgt, phase: 'compat' });

  const missing = Object.entries(source.criuFeatures)
    .filter(([f, on]) => on && !DUMP_ONLY_FEATURES.has(f) && target.criuFeatures[f] !== true)
    .map(([f]) => f);
  if (missing.length > 0) {
    out.push(
      reason(
        'KernelFeatureMissing',
        `criu check --feature reports ${missing.join(', ')} supported on ${src} but not on ${tgt} (kernel ${target.kernelRelease})`,
      ),
    );
  }

  const ks = kernelMajorMinor(source.kernelRelease);
  const kt = kernelMajorMinor(target.kernelRelease);
  if (ks !== undefined && kt !== undefined && (kt[0] < ks[0] || (kt[0] === ks[0] && kt[1] < ks[1]))) {
    out.push(
      reason(
        'KernelMismatch',
        `${tgt} runs kernel ${target.kernelRelease}, older than ${source.kernelRelease} on ${src}`,
      ),
    );
  }

  const need = memoryNeeded(workloadRssBytes);
  if (target.memAvailableBytes < need) {
    out.push(
      reason(
        'InsufficientMemory',
        `${tgt} has ${mib(target.memAvailableBytes)} available; the workload needs ${mib(workloadRssBytes)} ` +
          `resident plus a ${mib(need - workloadRssBytes)} margin`,
      ),
    );
  }

  const targetFlags = new Set(target.cpu.flags);
  const lacking = [...new Set(source.cpu.flags)].filter((f) => isaFlag(f) && !targetFlags.has(f));
  if (lacking.length > 0) {
    const shown = lacking.length > 20 ? `${lacking.slice(0, 20).join(' ')} (+${lacking.length - 20} more)` : lacking.join(' ');
    out.push(
      reason(
        'CPUIncompatible',
        `${tgt} CPU (${target.cpu.model}) lacks flags of ${src} CPU (${source.cpu.model}): ${shown}`,
      ),
    );
  }
  return out;
}
