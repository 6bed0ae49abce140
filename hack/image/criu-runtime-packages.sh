#!/bin/sh
# Prints the Debian packages that hold the shared libraries a binary links against, one per line, sorted.
# The agent image's build stage runs it on the CRIU it built, so that the runtime stage installs exactly
# those libraries and no build dependency:   criu-runtime-packages.sh /out/criu > /out/runtime-packages
set -eu
bin="${1:?usage: criu-runtime-packages.sh BINARY}"
[ -x "$bin" ] || { echo "criu-runtime-packages.sh: $bin is not an executable" >&2; exit 1; }

# ldd lines: "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)" and the loader "/lib64/ld-linux...".
libs="$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)"
[ -n "$libs" ] || { echo "criu-runtime-packages.sh: ldd found no shared library in $bin" >&2; exit 1; }

# The loop runs in the current shell (no pipe), so an `exit 1` in it fails the script.
pkgs=""
for lib in $libs; do
  # dpkg's database names a file by the path its package ships it at. With merged /usr that may be the
  # /usr or the / spelling, and ldd may print a symlink: try the path as printed, then fully resolved,
  # then with /usr added or removed. A diverted path (trixie's libc6 diverts its own loader,
  # /lib64/ld-linux-x86-64.so.2) also gets "diversion by libc6 from: ..." lines: skip those.
  real="$(readlink -f "$lib")"
  pkg=""
  for p in "$lib" "$real" "/usr$lib" "${lib#/usr}" "/usr$real" "${real#/usr}"; do
    pkg="$(dpkg-query -S "$p" 2>/dev/null | grep -v '^diversion by ' | head -n1 | cut -d: -f1)" || true
    [ -n "$pkg" ] && break
  done
  [ -n "$pkg" ] || { echo "criu-runtime-packages.sh: no Debian package holds $lib" >&2; exit 1; }
  case "$pkg" in
    *[!a-z0-9+.-]*) echo "criu-runtime-packages.sh: dpkg-query answered '$pkg' for $lib, not a package name" >&2; exit 1 ;;
  esac
  pkgs="$pkgs$pkg
"
done
printf '%s' "$pkgs" | sort -u
