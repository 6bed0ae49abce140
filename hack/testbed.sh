#!/usr/bin/env bash
# Starts, stops or shows a test bed by hand, for development:
#   bash hack/testbed.sh up [name]      provision, then start etcd + kube-apiserver + containerd (name: shared)
#   bash hack/testbed.sh down [name]    stop it and remove what it made
#   bash hack/testbed.sh status [name]
#   eval "$(bash hack/testbed.sh env [name])"   export MIGPROBE_TESTBED, KUBECONFIG, MIGPROBE_CRIU, PATH
# and the real three-node cluster (testbed/cluster.ts; one per machine, name: cluster):
#   bash hack/testbed.sh cluster-up|cluster-down|cluster-status [name]
#   eval "$(bash hack/testbed.sh cluster-env [name])"   export MIGPROBE_CLUSTER, KUBECONFIG, PATH
#   MIGPROBE_CLUSTER_RUNTIMES=1.6,2,2 bash hack/testbed.sh cluster-up   node-a on Debian's containerd 1.6 (default 2,2,2)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cmd="${1:-status}"
case "$cmd" in cluster-*) name="${2:-cluster}" ;; *) name="${2:-shared}" ;; esac
case "$cmd" in
  up|cluster-up) bash "$MIGPROBE_ROOT/hack/provision.sh" >&2 ;;
esac
[ -f "$MIGPROBE_CACHE/env.sh" ] || die "not provisioned yet: bash hack/provision.sh"
use_node
# shellcheck source=/dev/null
. "$MIGPROBE_CACHE/env.sh"
case "$cmd" in
  env)
    cat "$MIGPROBE_CACHE/env.sh"
    echo "export PATH=\"$(dirname "$(command -v node)"):\$PATH\""
    echo "export MIGPROBE_TESTBED=/var/lib/migprobe-testbed/$name/state.json"
    echo "export KUBECONFIG=/var/lib/migprobe-testbed/$name/apiserver/kubeconfig"
    ;;
  cluster-env)
    cat "$MIGPROBE_CACHE/env.sh"
    echo "export PATH=\"$(dirname "$(command -v node)"):\$PATH\""
    echo "export MIGPROBE_CLUSTER=/var/lib/migprobe-cluster/$name/state.json"
    echo "export KUBECONFIG=/var/lib/migprobe-cluster/$name/apiserver/kubeconfig"
    ;;
  up|down|status) exec node "$MIGPROBE_ROOT/testbed/cli.ts" "$cmd" "$name" ;;
  cluster-up|cluster-down|cluster-status) exec node "$MIGPROBE_ROOT/testbed/cluster-cli.ts" "${cmd#cluster-}" "$name" ;;
  *) die "usage: hack/testbed.sh up|down|status|env [name], or cluster-up|cluster-down|cluster-status|cluster-env [name]" ;;
esac
