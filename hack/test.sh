#!/usr/bin/env bash
# Runs every test: provisions the test bed's parts (cached in ~/.cache/migprobe), typechecks, lints, starts
# a private test bed (etcd + kube-apiserver + containerd + CRIU), runs the unit and integration tests on it,
# and tears it down. Needs root. Extra arguments are passed to `node --test` (e.g. a file to run alone).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# MIGPROBE_TESTBED_NAME lets several runs share the machine, each with its own test bed.
provision_and_start_testbed "${MIGPROBE_TESTBED_NAME:-test}"

log "typecheck"; npx tsc -p tsconfig.json --noEmit
log "lint"; npx eslint .

files=("$@")
if [ "${#files[@]}" -eq 0 ]; then files=("src/**/*.test.ts" "test/**/*.test.ts"); fi
log "tests"
node --test --test-concurrency=1 --test-timeout=900000 "${files[@]}"
