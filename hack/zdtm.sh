#!/usr/bin/env bash
# Builds CRIU's own zdtm test suite (test/zdtm/lib, test/zdtm/static, and pycriu for zdtm.py) from the CRIU
# source tarball that hack/provision.sh downloaded, in a private copy: $MIGPROBE_CACHE/zdtm/criu-<version>.
# bench/conformance.ts runs those programs. Idempotent: a second run takes a second. Prints the copy's path.
#
#   bash hack/zdtm.sh            # provisions first when CRIU is not there yet
#
# A static program that does not build here (a missing header or library) is left out, not fatal: the
# conformance report lists it as not runnable.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root: zdtm tests need namespaces and CRIU"
src="$MIGPROBE_CACHE/criu-src"
tarball="$(ls "$src"/criu_*.orig.tar.* 2>/dev/null | sort -V | tail -n1 || true)"
if [ -z "$tarball" ]; then
  bash "$MIGPROBE_ROOT/hack/provision.sh" >&2
  tarball="$(ls "$src"/criu_*.orig.tar.* 2>/dev/null | sort -V | tail -n1 || true)"
fi
[ -n "$tarball" ] || die "no CRIU source tarball in $src (bash hack/provision.sh downloads it)"
ver="$(basename "$tarball" | sed -E 's/^criu_([0-9.]+)\.orig.*/\1/')"
dir="$MIGPROBE_CACHE/zdtm/criu-$ver"
stamp="$dir/.migprobe-built"

# zdtm.py: python3 with yaml and protobuf (pycriu); aio00 links libaio, different_creds libcap, netns_sub_veth libnl,
# (uprobes needs libtracefs >= 1.7: Debian 12 has 1.6.4, so the Makefile leaves it out.)
PKGS=(python3 python3-yaml python3-protobuf libaio-dev libcap-dev libnl-3-dev libnl-route-3-dev
  gcc make protobuf-compiler pkgconf)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages for zdtm: ${missing[*]}"
  apt-get update -qq >/dev/null || die "apt-get update failed: the Debian archive must be reachable"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi

if [ ! -f "$stamp" ]; then
  log "building CRIU's zdtm tests from $tarball into $dir (a few minutes on 2 cores)"
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  tmp="$(mktemp -d "$MIGPROBE_CACHE/zdtm/.x.XXXXXX")"
  tar -xf "$tarball" -C "$tmp"
  mv "$tmp/criu-$ver" "$dir"
  rmdir "$tmp"
  blog="$dir/migprobe-build.log"
  # pycriu (zdtm.py imports it) comes from `make lib`; the test programs from test/zdtm.
  make -C "$dir" -j"$(nproc)" lib >"$blog" 2>&1 || die "make lib (pycriu) failed, see $blog"
  make -C "$dir/test/zdtm/lib" -j"$(nproc)" >>"$blog" 2>&1 || die "building test/zdtm/lib failed, see $blog"
  # zdtm.py builds these itself on its first run; built here so that parallel runs never race to build them.
  make -C "$dir/test" zdtm_ct umount2 >>"$blog" 2>&1 || die "building zdtm_ct failed, see $blog"
  touch "$stamp"
fi
# This machine's root has no CAP_SYS_RESOURCE in its bounding set, so no CRIU here can read the rlimits of a task
# of another uid ("Can't get rlimit 0: Operation not permitted"): zdtm's non-suid tests, which drop to uid 18943,
# would all fail for that one reason. MIGPROBE_ZDTM_ROOT=1 (set by bench/conformance.ts when CAP_SYS_RESOURCE is
# missing) keeps them root, as zdtm runs its `suid` tests. One of the two changes made to CRIU's harness.
grep -q MIGPROBE_ZDTM_ROOT "$dir/test/zdtm.py" || sed -i \
  "s/^\( *\)if not test_flag(self.__desc, 'suid'):\$/\1if not test_flag(self.__desc, 'suid') and not os.environ.get('MIGPROBE_ZDTM_ROOT'):/" \
  "$dir/test/zdtm.py"
grep -q MIGPROBE_ZDTM_ROOT "$dir/test/zdtm.py" || die "could not patch $dir/test/zdtm.py for MIGPROBE_ZDTM_ROOT"
# zdtm.py gives every criu call 60 s; the bench's criu shim runs migprobe's check inside the first dump, which on a
# loaded 2-core machine can take longer: MIGPROBE_ZDTM_CRIU_TIMEOUT (seconds) raises that bound.
grep -q MIGPROBE_ZDTM_CRIU_TIMEOUT "$dir/test/zdtm.py" || sed -i \
  "s/^\( *\)timeout=60):\$/\1timeout=int(os.environ.get('MIGPROBE_ZDTM_CRIU_TIMEOUT', '60'))):/" "$dir/test/zdtm.py"
grep -q MIGPROBE_ZDTM_CRIU_TIMEOUT "$dir/test/zdtm.py" \
  || die "could not patch $dir/test/zdtm.py for MIGPROBE_ZDTM_CRIU_TIMEOUT"
/usr/bin/python3 -c 'import yaml, google.protobuf' 2>/dev/null \
  || die "zdtm.py needs Debian's /usr/bin/python3 with python3-yaml and python3-protobuf"
# -k: a program that cannot build here must not stop the others (make is a no-op when all are built).
make -C "$dir/test/zdtm/static" -k -j"$(nproc)" >"$dir/migprobe-static.log" 2>&1 \
  || log "some zdtm static programs did not build here (see $dir/migprobe-static.log); the report lists them"
echo "$dir"
