#!/usr/bin/env bash
# Runs every test: provisions the test bed's parts (cached in ~/.cache/migprobe), typechecks, lints, starts
# a private test bed (etcd + kube-apiserver + containerd + CRIU) and the real three-node cluster, runs the unit
# and integration tests on them, and tears both down. Needs root. Extra arguments are passed to `node --test`
# (e.g. a file to run alone); the cluster is then started only for files under test/cluster/
# (MIGPROBE_CLUSTER_UP=1 or 0 overrides; MIGPROBE_CLUSTER_RUNTIMES=1.6,2,2 puts node-a on containerd 1.6).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# MIGPROBE_TESTBED_NAME lets several runs share the machine, each with its own test bed.
provision_and_start_testbed "${MIGPROBE_TESTBED_NAME:-test}"

want_cluster="${MIGPROBE_CLUSTER_UP:-}"
if [ -z "$want_cluster" ]; then
  want_cluster=0
  [ "$#" -gt 0 ] || want_cluster=1
  for f in "$@"; do case "$f" in *test/cluster*) want_cluster=1 ;; esac; done
fi
# One cluster per machine: MIGPROBE_CLUSTER_NAME names it.
if [ "$want_cluster" = 1 ]; then start_cluster "${MIGPROBE_CLUSTER_NAME:-cluster}"; fi

log "typecheck"; npx tsc -p tsconfig.json --noEmit
log "lint"; npx eslint .

files=("$@")
if [ "${#files[@]}" -eq 0 ]; then files=("src/**/*.test.ts" "test/**/*.test.ts"); fi
log "tests"
node --test --test-concurrency=1 --test-timeout=900000 "${files[@]}"
