"""Training benchmark on the local cluster (prints figures; not a test).

    .venv/bin/kiln dev up && .venv/bin/python bench/training/run.py [--jobs 200] [--e2e 5]

1. Burst: N TrainingJobs created at once (N concurrent POSTs from one asyncio client).
   For each, the time from sending its POST to its training Pod existing (first seen on a
   pod watch). The floor is the same client creating N Pods directly, at once, in the same
   run: the time from sending the POST to the Pod existing (the POST's answer). Training
   pods ask for 1000 CPUs and direct pods carry a scheduling gate, so none of them runs:
   this measures the control loop, not 200 trainers on two cores.
2. Operator memory: RSS of the operator process sampled every 50 ms during the burst.
3. End to end: iris TrainingJobs one after the other, the time from the POST to an
   Approved ModelVersion, minus the trainer's own fit time (from its report).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from kiln.k8s.client import MODEL_VERSIONS, PODS, TRAINING_JOBS, KubeClient, Resource
from kiln.settings import DEFAULT_TRAINER_IMAGE
from kilndev.config import ClusterPaths

ROOT = Path(__file__).resolve().parents[2]
# The tests' support code (one operator launcher) is shared with the benchmarks.
sys.path.insert(0, str(ROOT))
from tests.support.operator_process import OperatorProcess  # noqa: E402

BUCKET = "datasets"
NAMESPACES = Resource("", "v1", "namespaces")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(round(q / 100 * (len(ordered) - 1)), len(ordered) - 1)
    return ordered[index]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_env() -> dict[str, str]:
    env = dict(os.environ)
    for line in (ClusterPaths.default().root / "env").read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value.strip("'\"")
    return env


def job(name: str, dataset: str, *, runnable: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": "bench" if not runnable else "iris",
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 300},
        "dataset": {"uri": dataset, "target": "species"},
        "evaluation": {"seed": 7, "metrics": ["accuracy"]},
        "output": {
            "uri": f"s3://{BUCKET}/bench-models",
            "credentialsSecretRef": {"name": "s3-credentials"},
        },
        "registration": {"thresholds": [{"metric": "accuracy", "min": 0.8}]},
    }
    if not runnable:
        spec["resources"] = {"requests": {"cpu": "1000"}}
    return {
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": spec,
    }


def gated_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "schedulingGates": [{"name": "kiln.dev/bench"}],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
            "containers": [{"name": "c", "image": DEFAULT_TRAINER_IMAGE}],
        },
    }


async def watch_pods(
    client: KubeClient,
    namespace: str,
    seen: dict[str, float],
    stop: asyncio.Event,
    phases: dict[tuple[str, str], float] | None = None,
) -> None:
    """Record when each pod is first seen (ADDED) on a watch of the namespace, and when
    each of its phases (Pending, Running, Succeeded…) is first seen."""
    session = client._get_session()
    headers = {"Authorization": client.credentials.authorization() or ""}
    url = client.credentials.server + PODS.path(namespace)
    params = {"watch": "1", "allowWatchBookmarks": "false", "timeoutSeconds": "600"}
    async with session.get(
        url, params=params, headers=headers, timeout=aiohttp.ClientTimeout(total=None)
    ) as response:
        while not stop.is_set():
            line = await response.content.readline()
            if not line:
                return
            event = json.loads(line)
            name = event["object"]["metadata"]["name"]
            now = time.perf_counter()
            seen.setdefault(name, now)
            if phases is not None:
                phase = (event["object"].get("status") or {}).get("phase", "")
                phases.setdefault((name, phase), now)


async def burst(client: KubeClient, namespace: str, jobs: int, dataset: str, pid: int) -> None:
    seen: dict[str, float] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_pods(client, namespace, seen, stop))
    await asyncio.sleep(1)

    # The floor: the same client creates the same number of Pods directly, at once.
    sent: dict[str, float] = {}
    done: dict[str, float] = {}

    async def direct(i: int) -> None:
        name = f"direct-{i}"
        sent[name] = time.perf_counter()
        await client.create(PODS, namespace, gated_pod(name))
        done[name] = time.perf_counter()

    await asyncio.gather(*(direct(i) for i in range(jobs)))
    floor = [done[n] - sent[n] for n in sent]

    # The operator: N TrainingJobs at once; latency until each one's pod exists.
    rss: list[float] = [rss_mib(pid)]
    sampling = True

    async def sample() -> None:
        while sampling:
            rss.append(rss_mib(pid))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    created: dict[str, float] = {}
    answered: dict[str, float] = {}

    async def create_job(i: int) -> None:
        name = f"b{i}"
        created[name] = time.perf_counter()
        await client.create(TRAINING_JOBS, namespace, job(name, dataset, runnable=False))
        answered[name] = time.perf_counter()

    await asyncio.gather(*(create_job(i) for i in range(jobs)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(f"{n}-1-1" in seen for n in created) < jobs:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)
    sampling = False
    await sampler
    stop.set()
    watcher.cancel()
    latencies = [seen[f"{n}-1-1"] - t for n, t in created.items() if f"{n}-1-1" in seen]
    # From the moment the TrainingJob exists (its POST answered): the control loop alone.
    after_exists = [seen[f"{n}-1-1"] - t for n, t in answered.items() if f"{n}-1-1" in seen]
    admission = [answered[n] - created[n] for n in answered]

    print(f"\n== burst: {jobs} TrainingJobs created at once ==")
    print(f"pods created by the operator: {len(latencies)}/{jobs}")
    tj50, tj99 = percentile(latencies, 50), percentile(latencies, 99)
    f50, f99 = percentile(floor, 50), percentile(floor, 99)
    print(f"TrainingJob -> Pod exists : p50 {tj50 * 1000:7.1f} ms   p99 {tj99 * 1000:7.1f} ms")
    print(f"direct Pod create (floor) : p50 {f50 * 1000:7.1f} ms   p99 {f99 * 1000:7.1f} ms")
    print(f"ratio                     : p50 {tj50 / f50:5.2f}x      p99 {tj99 / f99:5.2f}x")
    a50, a99 = percentile(admission, 50), percentile(admission, 99)
    e50, e99 = percentile(after_exists, 50), percentile(after_exists, 99)
    print(f"  of which TrainingJob POST: p50 {a50 * 1000:7.1f} ms   p99 {a99 * 1000:7.1f} ms")
    print(f"TrainingJob exists -> Pod : p50 {e50 * 1000:7.1f} ms   p99 {e99 * 1000:7.1f} ms")
    print(f"ratio                     : p50 {e50 / f50:5.2f}x      p99 {e99 / f99:5.2f}x")
    print(f"max TrainingJob -> Pod    : {max(latencies) * 1000:.1f} ms")
    print(
        f"operator RSS              : {rss[0]:.1f} MiB before, peak {max(rss):.1f} MiB, "
        f"{rss[-1]:.1f} MiB after"
    )


STAGES = (
    ("TrainingJob POST -> Pod exists", "created", "pod"),
    ("Pod exists -> Running (scheduler + kubelet)", "pod", "running"),
    ("Running -> Succeeded seen (trainer process)", "running", "succeeded"),
    ("Succeeded -> ModelVersion exists", "succeeded", "version"),
    ("ModelVersion exists -> Approved", "version", "approved"),
)


async def end_to_end(client: KubeClient, namespace: str, runs: int, dataset: str) -> None:
    """Iris runs one after another: the total, and where the time goes."""
    seen: dict[str, float] = {}
    phases: dict[tuple[str, str], float] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_pods(client, namespace, seen, stop, phases))
    await asyncio.sleep(0.5)
    overheads, totals, fits = [], [], []
    stages: dict[str, list[float]] = {label: [] for label, _, _ in STAGES}
    trainer_phases: dict[str, list[float]] = {}
    for i in range(runs):
        name = f"iris{i}"
        pod_name = f"{name}-1-1"
        marks = {"created": time.perf_counter()}
        await client.create(TRAINING_JOBS, namespace, job(name, dataset, runnable=True))
        while "approved" not in marks and time.perf_counter() - marks["created"] < 180:
            items = await client.list(MODEL_VERSIONS, namespace, labels={"kiln.dev/run": "1"})
            for mv in items:
                if (mv["spec"].get("source") or {}).get("name") != name:
                    continue
                marks.setdefault("version", time.perf_counter())
                if (mv.get("status") or {}).get("approval", {}).get("state") == "Approved":
                    marks["approved"] = time.perf_counter()
            await asyncio.sleep(0.02)
        if "approved" not in marks:
            print(f"{name}: no Approved ModelVersion within 180 s")
            continue
        marks["pod"] = seen.get(pod_name, float("nan"))
        marks["running"] = phases.get((pod_name, "Running"), float("nan"))
        marks["succeeded"] = phases.get((pod_name, "Succeeded"), float("nan"))
        pod = await client.get(PODS, namespace, pod_name)
        message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
        durations = json.loads(message).get("durationSeconds", {})
        for phase, seconds in durations.items():
            trainer_phases.setdefault(phase, []).append(float(seconds))
        fit = float(durations.get("fit", 0.0))
        totals.append(marks["approved"] - marks["created"])
        fits.append(fit)
        overheads.append(marks["approved"] - marks["created"] - fit)
        for label, start, end in STAGES:
            stages[label].append(marks[end] - marks[start])
    stop.set()
    watcher.cancel()
    print(f"\n== apply -> Approved ModelVersion, {len(totals)} iris runs one after another ==")
    print(f"total    : median {statistics.median(totals):.2f} s   max {max(totals):.2f} s")
    print(f"fit      : median {statistics.median(fits):.3f} s")
    print(
        f"minus fit: median {statistics.median(overheads):.2f} s   "
        f"max {max(overheads):.2f} s   (includes the trainer process start and imports)"
    )
    print("where it goes (median of the runs):")
    for label, values in stages.items():
        print(f"  {label:<46} {statistics.median(values):6.2f} s")
    inside = " ".join(f"{k} {statistics.median(v):.2f}" for k, v in trainer_phases.items())
    print(f"  trainer's own phases (s): {inside}; the rest of Running is start-up and imports")


async def bench_namespace(client: KubeClient, env: dict[str, str]) -> str:
    """A fresh namespace with its default ServiceAccount and the S3 credentials Secret."""
    namespace = f"bench-{secrets.token_hex(3)}"
    await client.create(NAMESPACES, None, {"metadata": {"name": namespace}})
    # Pods need the namespace's default ServiceAccount, which a controller creates.
    while not await client.list(Resource("", "v1", "serviceaccounts"), namespace):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    await client.create(
        Resource("", "v1", "secrets"),
        namespace,
        {
            "metadata": {"name": "s3-credentials"},
            "stringData": {
                "AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
            },
        },
    )
    return namespace


async def main_async(args: argparse.Namespace, env: dict[str, str]) -> None:
    client = KubeClient.from_config(env["KUBECONFIG"])
    namespace = await bench_namespace(client, env)
    dataset = f"s3://{BUCKET}/bench/iris.csv"
    operator = start_operator(env, namespace)
    try:
        await asyncio.sleep(4)  # kopf startup
        await burst(client, namespace, args.jobs, dataset, operator.pid)
        if args.e2e:
            await end_to_end(client, namespace, args.e2e, dataset)
    finally:
        operator.stop()
        await client.delete(NAMESPACES, None, namespace)
        await client.close()


def start_operator(env: dict[str, str], namespace: str) -> OperatorProcess:
    """The operator, watching only the bench's namespace: other work on the cluster (e2e
    tests, other benchmarks) neither slows it down nor gets reconciled by it."""
    env = {**env, **kiln_settings(), "KILN_NAMESPACES": namespace}
    kubeconfig = Path(env["KUBECONFIG"])
    return OperatorProcess(kubeconfig, Path("/tmp") / "kiln-bench-operator.log", env).start()


def kiln_settings() -> dict[str, str]:
    """KILN_* from the caller's environment (e.g. KILN_WORKERS), for experiments."""
    return {k: v for k, v in os.environ.items() if k.startswith("KILN_")}


def upload(env: dict[str, str]) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(ROOT / "examples/data/iris.csv"), BUCKET, "bench/iris.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--e2e", type=int, default=5, help="iris runs for apply->Approved")
    args = parser.parse_args()
    env = load_env()
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    subprocess.run(
        ["kubectl", "apply", "-f", str(ROOT / "crds")],
        env=env,
        check=True,
        capture_output=True,
    )
    upload(env)
    asyncio.run(main_async(args, env))


if __name__ == "__main__":
    main()
