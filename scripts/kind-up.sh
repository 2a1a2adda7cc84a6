#!/usr/bin/env bash
# For users with Docker: a kind cluster running Kiln from locally built images.
#   make kind-up            (KIND_CLUSTER=kiln, KILN_TAG=dev by default)
# Needs docker, kind and kubectl on PATH. Not runnable on the machines Kiln is developed on
# (no container engine there); the local cluster `kiln dev up` is used instead. The e2e
# suite runs unchanged against the result:
#   KILN_E2E_USE_KUBECONFIG=1 KUBECONFIG=$(kind get kubeconfig-path) make e2e
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cluster=${KIND_CLUSTER:-kiln}
tag=${KILN_TAG:-dev}
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "$tool not found: make kind-up needs docker, kind and kubectl"; exit 1; }
done

kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 120s
kubectl config use-context "kind-$cluster"

for image in operator trainer server; do
  docker build -f "$root/images/Dockerfile.$image" -t "kiln/$image:$tag" "$root"
  kind load docker-image --name "$cluster" "kiln/$image:$tag"
done

# CRDs first (the base holds a ClusterKopfPeering, a kind its CRDs define), then Kiln.
kubectl apply -k "$root/manifests/crds"
kubectl wait --for=condition=Established --timeout=60s \
  crd/trainingjobs.kiln.dev crd/modelversions.kiln.dev crd/modeldeployments.kiln.dev \
  crd/clusterkopfpeerings.kopf.dev crd/kopfpeerings.kopf.dev
kubectl apply -k "$root/manifests"
kubectl -n kiln-system set image deployment/kiln-operator "operator=kiln/operator:$tag"
kubectl -n kiln-system set env deployment/kiln-operator \
  "KILN_TRAINER_IMAGE=kiln/trainer:$tag" "KILN_SERVER_IMAGE=kiln/server:$tag"
kubectl -n kiln-system rollout status deployment/kiln-operator --timeout=180s
echo "Kiln runs in kind cluster '$cluster'. Prometheus for canary analysis is yours to add"
echo "(set KILN_PROMETHEUS_URL on the operator); see docs/install.md."
