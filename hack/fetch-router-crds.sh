#!/usr/bin/env bash
# Copies the traffic routers' CRDs out of their Go modules (from the module
# proxy, no other download) into a cache outside the repo, keyed by version:
#   gateway-api: sigs.k8s.io/gateway-api   config/crd/standard/*.yaml
#   istio:       istio.io/api              kubernetes/customresourcedefinitions.gen.yaml
# Prints the directory. Ingress needs nothing: it is built into Kubernetes.
set -euo pipefail

GATEWAY_API_VERSION=v1.6.3
ISTIO_API_VERSION=v1.31.4

cache=${CANARY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canary-controller}
out="$cache/crds/gateway-api-$GATEWAY_API_VERSION-istio-$ISTIO_API_VERSION"

log() { echo "fetch-router-crds: $*" >&2; }

module_dir() {  # module@version -> its extracted directory in the module cache
  local work dir
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  (cd "$work" && go mod init fetch-router-crds >/dev/null 2>&1 &&
    GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
}

if [ ! -f "$out/.complete" ]; then
  mkdir -p "$out/gateway-api" "$out/istio"
  log "Gateway API $GATEWAY_API_VERSION"
  dir=$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")
  [ -n "$dir" ] || { log "no module directory for gateway-api"; exit 1; }
  install -m 0644 "$dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml "$out/gateway-api/"
  log "Istio API $ISTIO_API_VERSION"
  dir=$(module_dir "istio.io/api@$ISTIO_API_VERSION")
  [ -n "$dir" ] || { log "no module directory for istio api"; exit 1; }
  install -m 0644 "$dir/kubernetes/customresourcedefinitions.gen.yaml" "$out/istio/"
  touch "$out/.complete"
fi

echo "$out"
