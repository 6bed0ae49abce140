#!/usr/bin/env bash
# The main job: a two-node migprobe demo on a built-in local test bed. Provisions (cached), starts a test
# bed (etcd + kube-apiserver + containerd + CRIU), then the controller and two node agents as nodes node-a
# and node-b on 127.0.0.2 and 127.0.0.3. Runs real containers as pods on node-a, applies examples/ probes
# targeting node-b, and shows `kubectl get migrationprobes`. Tears everything down at the end.
# Pass --keep to leave it running until Ctrl-C. Needs root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
provision_and_start_testbed demo
node hack/demo.ts "$@"
