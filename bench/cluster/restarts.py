"""The operator's watches after control-plane restarts on the kiln dev cluster (prints
figures; not a test).

    .venv/bin/kiln dev up && .venv/bin/python bench/cluster/restarts.py [--restarts 5]

The operator runs on the host, watching one namespace. Each round stops a component
(kube-apiserver, or etcd behind it) for `--down` seconds, starts it again and waits until
it is healthy, then creates a TrainingJob and times how long until its training pod exists:
that is the operator's watch having recovered (kopf re-lists and re-watches), its reconcile
and its pod creation. The floor is the same measurement with no restart before it, in the
same run. A round that takes longer than `--timeout` is a frozen watch and is reported as
such.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from kilndev.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "training"))
import run as training_bench  # noqa: E402  (the training benchmark's cluster helpers)
from tests.support.operator_process import OperatorProcess  # noqa: E402  (one launcher)


def unschedulable_job(name: str) -> dict[str, Any]:
    """A TrainingJob whose pod asks for 1000 CPUs: it is created, never runs."""
    return training_bench.job(name, "s3://datasets/bench/iris.csv", runnable=False)


def time_to_pod(api: client.ApiClient, namespace: str, name: str, timeout: float) -> float:
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    started = time.monotonic()
    while True:
        try:
            custom.create_namespaced_custom_object(
                "kiln.dev", "v1alpha1", namespace, "trainingjobs", unschedulable_job(name)
            )
            break
        except Exception:  # the apiserver may still refuse requests for a moment
            if time.monotonic() - started > timeout:
                return float("inf")
            time.sleep(0.05)
    created = time.monotonic()
    while time.monotonic() - created < timeout:
        pods = core.list_namespaced_pod(namespace, label_selector="kiln.dev/run").items
        if any(p.metadata.name.startswith(f"{name}-") for p in pods):
            return time.monotonic() - created
        time.sleep(0.05)
    return float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=5, help="rounds per component")
    parser.add_argument("--down", type=float, default=3.0, help="seconds a component is down")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    env = training_bench.load_env()
    subprocess.run(
        ["kubectl", "apply", "-f", str(ROOT / "crds")], env=env, check=True, capture_output=True
    )
    cluster = Cluster()
    api = config.new_client_from_config(config_file=env["KUBECONFIG"])
    core = client.CoreV1Api(api)
    namespace = f"bench-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace}})
    operator = OperatorProcess(
        Path(env["KUBECONFIG"]),
        Path("/tmp/kiln-bench-restarts-operator.log"),
        {**env, "KILN_NAMESPACES": namespace},
    ).start()
    figures: dict[str, list[float]] = {"none": []}
    try:
        time.sleep(5)  # kopf start-up
        for round_ in range(args.restarts):
            figures["none"].append(time_to_pod(api, namespace, f"floor{round_}", args.timeout))
            for component in ("kube-apiserver", "etcd"):
                assert cluster.stop_component(component), component
                time.sleep(args.down)
                cluster.start_component(component)
                if component == "etcd":  # the apiserver answers again once etcd is back
                    cluster.start_component("kube-apiserver")
                name = f"{component.split('-')[-1]}{round_}"
                seconds = time_to_pod(api, namespace, name, args.timeout)
                figures.setdefault(component, []).append(seconds)
                print(
                    f"round {round_}: {component} down {args.down:.0f} s -> pod in {seconds:.2f} s"
                )
                if operator.process is None or operator.process.poll() is not None:
                    print("the operator exited; its log tail:\n" + operator.log_tail())
                    raise SystemExit(1)
    finally:
        operator.stop()
        core.delete_namespace(namespace)
    print(
        f"\n== TrainingJob created -> its pod exists, after a restart ({args.restarts} rounds) =="
    )
    for label, values in figures.items():
        frozen = sum(1 for v in values if v == float("inf"))
        finite = [v for v in values if v != float("inf")]
        if not finite:
            print(f"{label:<15}: every round frozen (> {args.timeout:.0f} s)")
            continue
        print(
            f"{label:<15}: median {statistics.median(finite):.2f} s  max {max(finite):.2f} s"
            f"  frozen (> {args.timeout:.0f} s): {frozen}"
        )


if __name__ == "__main__":
    main()
