#!/usr/bin/env bash
# `make demo`: bring up the local cluster and show Kiln's story on it, step by step.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Local Kubernetes cluster (upstream control plane; kubelet + containerd nodes; registry, DNS, Prometheus, S3)"
.venv/bin/kiln dev up
# shellcheck disable=SC1090
source "$(.venv/bin/python -c 'from kilndev.config import ClusterPaths; print(ClusterPaths.default().root)')/env"
fail() { printf '\n\033[1;31mFAILED: %s\033[0m\n' "$*"; exit 1; }

say "kubectl get nodes"
kubectl get nodes -o wide

say "Kiln CRDs"
kubectl apply -k manifests/crds >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl get crd | grep kiln.dev

say "A 2-replica Deployment pulled from the local registry and run by the kubelet"
kubectl apply -f examples/hello/ >/dev/null
kubectl rollout status deployment/hello -n kiln-demo --timeout=120s
kubectl get pods -n kiln-demo -l app=hello -o wide
for _ in $(seq 100); do  # the EndpointSlice follows readiness a moment later
  [ "$(kubectl get endpointslice -n kiln-demo -l kubernetes.io/service-name=hello \
       -o jsonpath='{range .items[*].endpoints[*]}{.conditions.ready}{"\n"}{end}' | grep -c true)" = 2 ] && break
  sleep 0.2
done
ip=$(kubectl get svc hello -n kiln-demo -o jsonpath='{.spec.clusterIP}')
say "Calling the Service ClusterIP $ip 20 times (kube-proxy balances new connections)"
# kube-proxy programs a new Service, and each endpoint turning ready, a moment after the
# EndpointSlice says so (about a second here): wait until both pods have answered once.
for _ in $(seq 150); do
  [ "$(for _ in $(seq 8); do curl -s --max-time 2 "http://$ip/"; echo; done | sort -u | grep -c 'hello from')" = 2 ] && break
  sleep 0.2
done
answers=$(for _ in $(seq 20); do curl -s --max-time 5 "http://$ip/"; echo; done | sort | uniq -c)
echo "$answers"
[ "$(echo "$answers" | grep -c 'hello from')" = 2 ] || fail "20 calls did not reach both hello pods"

say "Prometheus scrapes both hello pods (up == 1)"
for _ in $(seq 60); do
  ups=$(curl -s "$KILN_PROMETHEUS_URL/api/v1/query" \
    --data-urlencode 'query=up{job="kubernetes-pods",namespace="kiln-demo",app="hello"} == 1' \
    | .venv/bin/python -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["result"]))')
  [ "$ups" = 2 ] && break
  sleep 1
done
curl -s "$KILN_PROMETHEUS_URL/api/v1/query" --data-urlencode 'query=up{job="kubernetes-pods",namespace="kiln-demo"}' \
  | .venv/bin/python -c 'import json,sys; [print(" ", r["metric"].get("pod"), "up =", r["value"][1]) for r in json.load(sys.stdin)["data"]["result"]]'
[ "$ups" = 2 ] || fail "Prometheus does not scrape both hello pods"

say "The Kiln operator, in-cluster from its image (kubectl apply -k manifests/overlays/dev)"
kubectl apply -k manifests/overlays/dev >/dev/null
kubectl -n kiln-system rollout status deployment/kiln-operator --timeout=180s
kubectl -n kiln-system get pods -o wide

say "Training: the iris TrainingJob, from S3 data to an Approved ModelVersion"
.venv/bin/python - <<'PY'
import os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
if "datasets" not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
    s3.create_bucket(Bucket="datasets")
s3.upload_file("examples/data/iris.csv", "datasets", "iris.csv")
print("  uploaded examples/data/iris.csv to s3://datasets/iris.csv")
PY
# A demo run starts from scratch: a previous run's iris versions would change the story.
kubectl delete namespace kiln-demo --ignore-not-found --wait=true --timeout=120s >/dev/null
kubectl create namespace kiln-demo
kubectl -n kiln-demo create secret generic s3-credentials \
  --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
  --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f examples/iris/trainingjob.yaml
until kubectl -n kiln-demo get mv iris-v1 >/dev/null 2>&1; do sleep 1; done
kubectl -n kiln-demo wait --for=condition=Approved mv/iris-v1 --timeout=180s
kubectl -n kiln-demo get tj,mv
say "kiln registry (also: kubectl kiln registry)"
.venv/bin/kiln registry -n kiln-demo

say "Serving: a ModelDeployment follows the latest Approved iris version"
# The example with demo-sized timings: 2 replicas, one 50 % canary step, 10 s analyses.
.venv/bin/python - <<'PY' | kubectl -n kiln-demo apply -f -
import sys, yaml
md = yaml.safe_load(open("examples/iris/modeldeployment.yaml"))
md["spec"]["replicas"] = 2
md["spec"]["canary"].update(steps=[50], intervalSeconds=10, minRequests=10, failureLimit=0)
md["spec"]["monitoring"].update(windowSeconds=60, intervalSeconds=10)
yaml.safe_dump(md, sys.stdout)
PY
until [ "$(kubectl -n kiln-demo get md iris -o jsonpath='{.status.stableVersion}')" = iris-v1 ] &&
      [ "$(kubectl -n kiln-demo get md iris -o jsonpath='{.status.phase}')" = Promoted ]; do sleep 1; done
kubectl -n kiln-demo rollout status deployment/iris-stable --timeout=120s
kubectl -n kiln-demo get md,deploy,svc
url="http://$(kubectl -n kiln-demo get svc iris -o jsonpath='{.spec.clusterIP}')"
say "One prediction through the Service (Open Inference Protocol v2)"
curl -s "$url/v2/models/iris/infer" -H 'Content-Type: application/json' \
  -d '{"inputs":[{"name":"input-0","shape":[2,4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2,6.7,3.0,5.2,2.3]}]}'
echo

say "Continuous delivery: retrain -> iris-v2 Approved -> canary analysed on live traffic"
# Steady traffic for the analysis (bounded: stops after 5 minutes or when the demo ends).
.venv/bin/python - "$url" <<'PY' &
import csv, itertools, json, sys, time, urllib.request
# The rows of the training table, in turn: traffic from the training distribution.
features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
rows = [[float(r[f]) for f in features] for r in csv.DictReader(open("examples/data/iris.csv"))]
end = time.monotonic() + 300
for row in itertools.cycle(rows):
    if time.monotonic() > end:
        break
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": row}]}
    try:
        urllib.request.urlopen(urllib.request.Request(
            sys.argv[1] + "/v2/models/iris/infer", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}), timeout=5).read()
    except OSError:
        pass
    time.sleep(0.05)
PY
load_pid=$!
trap 'kill $load_pid 2>/dev/null || true' EXIT
kubectl -n kiln-demo annotate tj iris kiln.dev/retrain="$(date +%s)" --overwrite >/dev/null
until kubectl -n kiln-demo get mv iris-v2 >/dev/null 2>&1; do sleep 1; done
kubectl -n kiln-demo wait --for=condition=Approved mv/iris-v2 --timeout=180s
.venv/bin/kiln canary iris -n kiln-demo --watch --until-done
kill $load_pid 2>/dev/null || true
kubectl -n kiln-demo get md iris
[ "$(kubectl -n kiln-demo get md iris -o jsonpath='{.status.stableVersion}')" = iris-v2 ] \
  || fail "iris-v2 was not promoted"

say "Monitoring: captured predictions, labels sent back, drift against iris-v2's baseline"
# Monitoring judges the stable track: wait until iris-v2's stable pods alone serve.
kubectl -n kiln-demo rollout status deployment/iris-stable --timeout=180s
kubectl -n kiln-demo wait --for=condition=Ready md/iris --timeout=180s
.venv/bin/python - "$url" <<'PY'
import csv, json, sys, urllib.request
url, features = sys.argv[1], ["sepal_length", "sepal_width", "petal_length", "petal_width"]
labels = []
for i, row in enumerate(csv.DictReader(open("examples/data/iris.csv"))):
    data = [float(row[f]) for f in features]
    body = {"id": f"demo-{i}",
            "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": data}]}
    request = urllib.request.Request(url + "/v2/models/iris/infer", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(request, timeout=5))
    labels.append({"id": answer["id"], "label": row["species"]})
request = urllib.request.Request(url + "/v2/models/iris/feedback",
                                 json.dumps({"labels": labels}).encode(),
                                 {"Content-Type": "application/json"})
accepted = json.load(urllib.request.urlopen(request, timeout=10))["accepted"]
print(f"  {len(labels)} predictions with ids demo-0..demo-{len(labels) - 1}; {accepted} true labels sent back")
PY
deadline=$((SECONDS + 120))
until [ "$(kubectl -n kiln-demo get md iris -o jsonpath='{.status.monitoring.quality.labelled}')" -ge 50 ] 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || fail "no live accuracy from the labels within 120 s"
  sleep 2
done
.venv/bin/kiln monitor iris -n kiln-demo
[ "$(kubectl -n kiln-demo get md iris -o jsonpath='{.status.conditions[?(@.type=="QualityDegraded")].status}')" = False ] \
  || fail "live accuracy of iris-v2 on its own training rows is degraded"

say "Experiments: a random search, 8 trial pods 2 at a time (examples/iris/search.yaml)"
kubectl apply -f examples/iris/search.yaml
kubectl -n kiln-demo wait --for=jsonpath='{.status.phase}'=Succeeded tj/iris-search --timeout=300s \
  || fail "the search did not succeed"
kubectl -n kiln-demo get tj iris-search -o wide
.venv/bin/kiln trials iris-search -n kiln-demo
.venv/bin/kiln compare iris-v2 iris-tuned-v1 -n kiln-demo

say "Every shipped Grafana panel's query against this Prometheus (series counts)"
sleep 10  # one more scrape of the operator after the rollout
.venv/bin/python -m kilndev.dashboards "$KILN_PROMETHEUS_URL" --namespace kiln-demo \
  || echo "  (an EMPTY panel has had nothing to show in this demo; see above)"

cat <<MSG

The cluster stays up. Try:
  source $(dirname "$KUBECONFIG")/env
  kubectl get pods -A
  kubectl kiln canary iris -n kiln-demo   # the rollout, with every analysis result
  kubectl kiln monitor iris -n kiln-demo  # drift per feature, live accuracy, capture
  kubectl kiln baseline iris-v2 -n kiln-demo  # the training profile drift is measured against
  kubectl kiln runs iris -n kiln-demo     # each run and its trainer's phases
  kiln dev status        # health of every component
  kiln approve iris-v1 -n kiln-demo --reason "reviewed"   # or: kubectl kiln reject …
  kubectl -n kiln-system logs deploy/kiln-operator        # the operator's log
  kiln dev down          # remove everything (processes, namespaces, bridge, mounts)
MSG
