#!/usr/bin/env bash
# Renders the Helm chart's default install (cluster-wide, namespace canary-system)
# into manifests/install.yaml, for `kubectl apply` without Helm. The CRD is in
# manifests/crds/ (from `make crds`). With --check, only reports drift (exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."

NAMESPACE=canary-system
# Rendering needs a Kubernetes version for the chart's kubeVersion check; the
# output does not depend on it.
KUBE_VERSION=1.35.4
helm=${HELM:-$(hack/build-binaries.sh)/helm}

render() {
  cat <<HEADER
# Generated from helm/canary-controller by hack/render-manifests.sh. Do not edit by hand.
#   kubectl apply --server-side -f manifests/crds/
#   kubectl apply -f manifests/install.yaml
---
apiVersion: v1
kind: Namespace
metadata:
  name: $NAMESPACE
  labels:
    pod-security.kubernetes.io/enforce: restricted
HEADER
  "$helm" template canary-controller helm/canary-controller \
    --namespace "$NAMESPACE" --kube-version "$KUBE_VERSION"
}

if [ "${1:-}" = "--check" ]; then
  if ! diff -u manifests/install.yaml <(render); then
    echo "manifests/install.yaml is out of date: run hack/render-manifests.sh" >&2
    exit 1
  fi
else
  render > manifests/install.yaml
fi
