"""Hyperparameter search on the local cluster: parallel trial pods against the same trials
one after another (prints figures; not a test).

    .venv/bin/kiln dev up
    .venv/bin/python bench/training/search.py [--trials 8] [--parallelism 2]

The same random search (same seed, so the same trial values) runs twice in one namespace,
one TrainingJob after the other: with `parallelism: 1` (the floor: the trials one after
another, as a loop over them would run) and with `--parallelism`. For each it prints the
wall time from the POST to the job Succeeded, the trial pods' own time (first seen ->
Succeeded on a pod watch), and the operator's overhead per trial: with parallelism 1, the
gap between a trial pod finishing and the next one appearing (the operator sees the pod
end, records it in one status write and creates the next pod).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # the training benchmark's cluster helpers

from kiln.k8s.client import TRAINING_JOBS, KubeClient


def search_job(name: str, dataset: str, trials: int, parallelism: int) -> dict[str, Any]:
    document = bench.job(name, dataset, runnable=True)
    spec = document["spec"]
    spec["estimator"] = "sklearn.ensemble.RandomForestClassifier"
    spec["params"] = {"n_jobs": 1}
    spec["search"] = {
        "strategy": "random",
        "maxTrials": trials,
        "parallelism": parallelism,
        "seed": 3,
        "objective": {"metric": "accuracy", "validation": {"kFolds": 3}},
        "parameters": [
            {"name": "n_estimators", "range": {"min": 20, "max": 80, "type": "int"}},
            {"name": "max_depth", "values": [2, 3, 4, None]},
        ],
    }
    return document


async def one_search(
    client: KubeClient,
    namespace: str,
    dataset: str,
    trials: int,
    parallelism: int,
    name: str | None = None,
) -> dict[str, Any]:
    seen: dict[str, float] = {}
    phases: dict[tuple[str, str], float] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(bench.watch_pods(client, namespace, seen, stop, phases))
    await asyncio.sleep(0.5)
    name = name or f"search-p{parallelism}"
    created = time.perf_counter()
    await client.create(TRAINING_JOBS, namespace, search_job(name, dataset, trials, parallelism))
    done = None
    while time.perf_counter() - created < 900:
        job = await client.get(TRAINING_JOBS, namespace, name)
        phase = (job.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            done = time.perf_counter()
            break
        await asyncio.sleep(0.1)
    stop.set()
    watcher.cancel()
    if done is None:
        raise SystemExit(f"{name}: not finished within 900 s")
    if phase != "Succeeded":
        raise SystemExit(f"{name}: {phase}: {(job.get('status') or {}).get('runs')}")
    trial_pods = sorted(
        (n for n in seen if n.startswith(f"{name}-1-t")),
        key=lambda n: int(n.split("-t")[1].split("-")[0]),
    )
    spans = {n: (seen[n], phases.get((n, "Succeeded"), float("nan"))) for n in trial_pods}
    gaps = []
    if parallelism == 1:
        ordered = [spans[n] for n in trial_pods]
        gaps = [later[0] - earlier[1] for earlier, later in itertools.pairwise(ordered)]
    return {
        "wall": done - created,
        "trial_pods": len(trial_pods),
        "pod_seconds": sum(end - start for start, end in spans.values()),
        "gaps": gaps,
    }


async def main_async(args: argparse.Namespace, env: dict[str, str]) -> None:
    client = KubeClient.from_config(env["KUBECONFIG"])
    namespace = await bench.bench_namespace(client, env)
    dataset = f"s3://{bench.BUCKET}/bench/iris.csv"
    operator = bench.start_operator(env, namespace)
    try:
        await asyncio.sleep(4)  # kopf startup
        # Not counted: both nodes pull the trainer image and the cluster warms up.
        await one_search(client, namespace, dataset, 2, 2, name="warm-up")
        floor = await one_search(client, namespace, dataset, args.trials, 1)
        fast = await one_search(client, namespace, dataset, args.trials, args.parallelism)
    finally:
        operator.stop()
        await client.delete(bench.NAMESPACES, None, namespace)
        await client.close()
    print(f"\n== a random search of {args.trials} trials (3-fold CV each), then the final fit ==")
    for label, figures in (("parallelism 1", floor), (f"parallelism {args.parallelism}", fast)):
        print(
            f"{label:<15}: {figures['wall']:6.1f} s POST -> Succeeded   "
            f"trial pods {figures['trial_pods']}, their time {figures['pod_seconds']:.1f} s"
        )
    print(
        f"ratio          : x{floor['wall'] / fast['wall']:.2f} (parallelism 1 / {args.parallelism})"
    )
    if floor["gaps"]:
        gaps = floor["gaps"]
        print(
            f"operator per trial (pod finished -> next trial pod, parallelism 1): "
            f"median {statistics.median(gaps):.2f} s, max {max(gaps):.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--parallelism", type=int, default=2)
    args = parser.parse_args()
    env = bench.load_env()
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    subprocess.run(
        ["kubectl", "apply", "-f", str(bench.ROOT / "crds")],
        env=env,
        check=True,
        capture_output=True,
    )
    bench.upload(env)
    asyncio.run(main_async(args, env))


if __name__ == "__main__":
    main()
