#!/usr/bin/env bash
# `make demo`: bring up the local cluster and show Kiln's story on it, step by step.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Local Kubernetes cluster (real kube-apiserver, controllers, node agent, Prometheus, S3)"
.venv/bin/kiln dev up
# shellcheck disable=SC1090
source "$(.venv/bin/python -c 'from kiln.devcluster.config import ClusterPaths; print(ClusterPaths.default().root)')/env"

say "kubectl get nodes"
kubectl get nodes -o wide

if compgen -G "crds/*.yaml" >/dev/null; then
  say "Kiln CRDs"
  kubectl apply -f crds/ >/dev/null
  kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
  kubectl get crd -l app.kubernetes.io/part-of=kiln 2>/dev/null || kubectl get crd | grep kiln.dev
fi

say "A 2-replica Deployment served by the node agent"
kubectl apply -f examples/hello/ >/dev/null
kubectl rollout status deployment/hello -n kiln-demo --timeout=90s
kubectl get pods -n kiln-demo -o wide
for _ in $(seq 50); do  # the EndpointSlice follows readiness a moment later
  [ "$(kubectl get endpointslice -n kiln-demo -l kubernetes.io/service-name=hello \
       -o jsonpath='{range .items[*].endpoints[*]}{.conditions.ready}{"\n"}{end}' | grep -c true)" = 2 ] && break
  sleep 0.2
done
ip=$(kubectl get svc hello -n kiln-demo -o jsonpath='{.spec.clusterIP}')
say "Calling the Service ClusterIP $ip four times (kube-proxy balances across the pods)"
for _ in 1 2 3 4 5 6; do curl -s "http://$ip/"; echo; done

say "Prometheus sees the pods it scrapes"
sleep 6
curl -s "$KILN_PROMETHEUS_URL/api/v1/query" --data-urlencode 'query=up{job="kubernetes-pods"}' \
  | .venv/bin/python -c 'import json,sys; [print(" ", r["metric"].get("pod"), "up =", r["value"][1]) for r in json.load(sys.stdin)["data"]["result"]]'

cat <<MSG

The cluster stays up. Try:
  source $(dirname "$KUBECONFIG")/env
  kubectl get pods -A
  kiln dev status        # health of every component
  kiln dev down          # remove everything (processes, namespaces, bridge, mounts)
MSG
