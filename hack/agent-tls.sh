#!/usr/bin/env bash
# Makes the agents' TLS Secret for the chart's `tls.mode=secret` (and for deploy/migprobe.yaml): a new CA
# and one serving certificate for SERVER_NAME, printed as a Secret manifest with the keys ca.crt, tls.crt
# and tls.key. Nothing is written to disk outside a temporary folder that is removed.
#
#   hack/agent-tls.sh [NAMESPACE] [SECRET_NAME] [SERVER_NAME] [DAYS] | kubectl apply -f -
#   (defaults: migprobe-system migprobe-agent-tls migprobe-agent 3650)
set -euo pipefail
ns="${1:-migprobe-system}"
name="${2:-migprobe-agent-tls}"
server="${3:-migprobe-agent}"
days="${4:-3650}"
command -v openssl >/dev/null || { echo "agent-tls.sh: openssl is needed" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${key[@]}" -days "$days" -subj "/CN=${server}-ca" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
openssl req "${key[@]}" -subj "/CN=${server}" -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n' "$server" >"$tmp/ext.cnf"
openssl x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial -days "$days" \
  -extfile "$tmp/ext.cnf" -out "$tmp/tls.crt" 2>/dev/null
openssl verify -CAfile "$tmp/ca.crt" "$tmp/tls.crt" >/dev/null

b64() { base64 -w0 <"$1"; }
cat <<YAML
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata:
  name: $name
  namespace: $ns
  labels:
    app.kubernetes.io/part-of: migprobe
data:
  ca.crt: $(b64 "$tmp/ca.crt")
  tls.crt: $(b64 "$tmp/tls.crt")
  tls.key: $(b64 "$tmp/tls.key")
YAML
