#!/usr/bin/env bash
# The main job: migprobe as it ships, on a real three-node Kubernetes cluster that the test bed runs on this
# machine (etcd, kube-apiserver, controller-manager, scheduler, kube-proxy, and kubelets node-a, node-b and
# node-c on containerd 2). Provisions (cached), starts the cluster, builds or reuses the images from the Dockerfiles,
# `helm install`s the chart, runs two real pods on node-a, applies examples/ probes targeting node-b, shows
# `kubectl get migrationprobes -o wide` and `kubectl describe` of one probe, `helm uninstall`s and tears the
# cluster down. Pass --keep to leave it running until Ctrl-C. Needs root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$MIGPROBE_ROOT"
bash hack/provision.sh
use_node
# shellcheck source=/dev/null
. "$MIGPROBE_CACHE/env.sh"
start_cluster demo
node hack/demo.ts "$@"
