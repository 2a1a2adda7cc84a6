"""Pod start-up latency on the cluster in $KUBECONFIG (default: the kiln dev cluster).

For each of N pods: time from the create call returning to a watch event showing the pod
bound, Running and Ready, measured by one client in this process, and from bound to
Running (the kubelet's and containerd's part, free of scheduler delays). Pods are created
`--parallel` at a time. Prints p50/p90/p99 and the Kubernetes SLO for comparison (p99 of
pod start-up under 5 s, measured excluding image pulls). Not a test: it prints figures.

    .venv/bin/python bench/cluster/pod_startup.py --pods 40 --parallel 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client, config

from kilndev.config import ClusterPaths

SCRIPT = "import time\nwhile True: time.sleep(60)"


def pod(name: str) -> dict:
    return {
        "metadata": {"name": name, "labels": {"bench": "pod-startup"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.11-slim",
                    "command": ["python3", "-c", SCRIPT],
                }
            ],
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=40)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()

    kubeconfig = os.environ.get("KUBECONFIG") or str(ClusterPaths.default().admin_kubeconfig)
    api = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    while not core.list_namespaced_service_account(ns).items:
        time.sleep(0.1)

    created: dict[str, float] = {}
    scheduled: dict[str, float] = {}
    running: dict[str, float] = {}
    ready: dict[str, float] = {}
    done = threading.Event()

    def watcher() -> None:
        # Raw JSON lines: the client's model deserialisation would add milliseconds per
        # event and bias the figures.
        resp = core.list_namespaced_pod(ns, watch=True, timeout_seconds=300, _preload_content=False)
        for line in resp:
            now = time.monotonic()
            p = json.loads(line)["object"]
            name = p["metadata"]["name"]
            status = p.get("status", {})
            if p.get("spec", {}).get("nodeName"):
                scheduled.setdefault(name, now)
            if status.get("phase") == "Running":
                running.setdefault(name, now)
            conds = status.get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                ready.setdefault(name, now)
            if len(ready) == args.pods:
                break
        done.set()

    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    time.sleep(0.5)

    def create(i: int) -> None:
        name = f"p{i:03d}"
        core.create_namespaced_pod(ns, pod(name))
        created[name] = time.monotonic()

    start = time.monotonic()
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(create, range(args.pods)))
    done.wait(300)
    wall = time.monotonic() - start

    to_scheduled = [scheduled[n] - created[n] for n in created if n in scheduled]
    to_running = [running[n] - created[n] for n in created if n in running]
    to_ready = [ready[n] - created[n] for n in created if n in ready]
    # The node's share (kubelet + containerd): from the watch showing the pod bound to the
    # watch showing it Running (one watch sees both, so scheduler delays under load drop out).
    bound_running = [running[n] - scheduled[n] for n in created if n in running and n in scheduled]
    print(f"pods: {args.pods} created {args.parallel} at a time, all Ready in {wall:.1f} s")
    for label, values in (
        ("create -> bound", to_scheduled),
        ("create -> Running", to_running),
        ("create -> Ready", to_ready),
        ("bound -> Running", bound_running),
    ):
        if not values:
            print(f"{label}: no pod got there")
            continue
        print(
            f"{label:18} n={len(values):3}  p50 {statistics.median(values) * 1000:7.0f} ms"
            f"  p90 {percentile(values, 0.9) * 1000:7.0f} ms"
            f"  p99 {percentile(values, 0.99) * 1000:7.0f} ms"
        )
    print("Kubernetes pod start-up SLO: p99 <= 5000 ms (image pulls excluded)")
    core.delete_namespace(ns)


if __name__ == "__main__":
    main()
