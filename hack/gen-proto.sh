#!/usr/bin/env bash
# Generates src/engine/criu-pb/*_pb.ts from CRIU's image schema in proto/criu with buf and protoc-gen-es (both
# dev dependencies in node_modules; nothing is downloaded). The output is committed, so running migprobe needs
# no generator; src/engine/criu-pb.test.ts checks that this script reproduces it byte for byte.
# Usage: hack/gen-proto.sh [OUT_DIR]   (default src/engine/criu-pb; another folder is for that comparison)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-src/engine/criu-pb}"
[ -x node_modules/.bin/buf ] && [ -x node_modules/.bin/protoc-gen-es ] \
  || { echo "gen-proto: node_modules lacks buf or protoc-gen-es: run npm ci" >&2; exit 1; }
node_modules/.bin/buf generate --template buf.gen.yaml -o "$out.buf-out.$$" >/dev/null
rm -rf "$out"
mv "$out.buf-out.$$/src/engine/criu-pb" "$out"
rm -rf "$out.buf-out.$$"
