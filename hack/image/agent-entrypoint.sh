#!/bin/sh
# Entry point of the agent image: refuse to start with a CRIU older than migprobe supports (Debian 12's 3.17
# fails on current kernels, trixie's 4.1.1 segfaults in RPC mode), then run the agent.
set -eu
criu="${MIGPROBE_CRIU:-criu}"
min="${MIGPROBE_CRIU_MIN:-4.2.0}"
have="$("$criu" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1)" || have=""
if [ -z "$have" ]; then
  echo "migprobe-agent: cannot run CRIU at '$criu' (MIGPROBE_CRIU): the image must carry CRIU >= $min" >&2
  exit 1
fi
if ! dpkg --compare-versions "$have" ge "$min"; then
  echo "migprobe-agent: CRIU $have at $criu is older than $min; rebuild the image (Dockerfile.agent builds CRIU from Debian sid's source)" >&2
  exit 1
fi
echo "migprobe-agent: CRIU $have at $criu" >&2
exec node "${MIGPROBE_AGENT_MAIN:-/app/dist/agent/main.js}" "$@"
