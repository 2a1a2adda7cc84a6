"""`kiln lineage` (TrainingJob → ModelVersion → ModelDeployment as a tree) and `kiln logs`.

The tree is computed by a pure function from the three lists of objects, so what a user
sees is unit-tested without a cluster.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from kiln.api.wire import (
    ATTEMPT_LABEL,
    GROUP,
    LINEAGE_DATASET,
    LINEAGE_PARENT_VERSION,
    RUN_LABEL,
    TRAINING_JOB_LABEL,
    VERSION,
)
from kiln.cli.versions import CliError, _api, _namespace, add_common

Obj = Mapping[str, Any]


def _served_by(version: str, deployments: Iterable[Obj]) -> list[str]:
    lines = []
    for md in deployments:
        status = md.get("status") or {}
        name = md["metadata"]["name"]
        if status.get("stableVersion") == version:
            lines.append(f"served by ModelDeployment {name} (stable, {status.get('phase', '-')})")
        if status.get("canaryVersion") == version:
            lines.append(
                f"served by ModelDeployment {name} "
                f"(canary {status.get('canaryWeight', 0)}%, {status.get('phase', '-')})"
            )
    return lines


def _version_line(mv: Obj) -> str:
    spec, meta = mv.get("spec") or {}, mv["metadata"]
    approval = ((mv.get("status") or {}).get("approval") or {}).get("state", "Pending")
    metrics = ",".join(f"{k}={v:.4g}" for k, v in sorted((spec.get("metrics") or {}).items()))
    annotations = meta.get("annotations") or {}
    parts = [f"ModelVersion {meta['name']}", approval]
    if metrics:
        parts.append(metrics)
    if LINEAGE_PARENT_VERSION in annotations:
        parts.append(f"parent {annotations[LINEAGE_PARENT_VERSION]}")
    if LINEAGE_DATASET in annotations:
        parts.append(f"data {annotations[LINEAGE_DATASET]}")
    return "  ".join(parts)


def lineage_tree(
    trainingjobs: Iterable[Obj], versions: Iterable[Obj], deployments: Iterable[Obj]
) -> list[str]:
    """Lines of a tree: each TrainingJob, its runs' ModelVersions, and who serves them."""
    deployments = list(deployments)
    by_job: dict[str, list[Obj]] = defaultdict(list)
    for mv in versions:
        by_job[(mv["metadata"].get("labels") or {}).get(TRAINING_JOB_LABEL, "")].append(mv)
    lines: list[str] = []
    jobs = sorted(trainingjobs, key=lambda j: str(j["metadata"]["name"]))
    known = {j["metadata"]["name"] for j in jobs}
    for job in jobs:
        name = job["metadata"]["name"]
        status = job.get("status") or {}
        lines.append(
            f"TrainingJob {name} (model {job.get('spec', {}).get('model', '-')}, "
            f"{status.get('phase', 'Pending')})"
        )
        children = sorted(by_job.get(name, []), key=lambda v: int(v["spec"].get("version", 0)))
        _append_versions(lines, children, deployments)
    orphans = [mv for key, mvs in by_job.items() if key not in known for mv in mvs]
    if orphans:
        lines.append("(ModelVersions whose TrainingJob is gone)")
        _append_versions(lines, orphans, deployments)
    return lines


def _append_versions(lines: list[str], versions: list[Obj], deployments: list[Obj]) -> None:
    for i, mv in enumerate(versions):
        last = i == len(versions) - 1
        run = (mv["metadata"].get("labels") or {}).get(RUN_LABEL, "?")
        lines.append(f"{'└──' if last else '├──'} run {run} → {_version_line(mv)}")
        served = _served_by(mv["metadata"]["name"], deployments)
        for j, line in enumerate(served):
            branch = "    " if last else "│   "
            lines.append(f"{branch}{'└──' if j == len(served) - 1 else '├──'} {line}")


def lineage(args: argparse.Namespace) -> int:
    from kubernetes import client

    custom: Any = client.CustomObjectsApi(_api(args))
    namespace = _namespace(args)

    def items(plural: str) -> list[Obj]:
        return list(
            custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]
        )

    jobs, versions, deployments = (
        items("trainingjobs"),
        items("modelversions"),
        items("modeldeployments"),
    )
    if args.model:
        jobs = [j for j in jobs if j.get("spec", {}).get("model") == args.model]
        versions = [v for v in versions if v.get("spec", {}).get("model") == args.model]
        deployments = [d for d in deployments if d.get("spec", {}).get("model") == args.model]
    for line in lineage_tree(jobs, versions, deployments) or ["(nothing trained yet)"]:
        print(line)
    return 0


def training_pod_name(pods: Iterable[Obj], job: str, run: int | None) -> str:
    """The pod of the newest attempt of `run` (default: the newest run) of TrainingJob `job`."""

    def key(pod: Obj) -> tuple[int, int]:
        labels = pod["metadata"].get("labels") or {}
        return int(labels.get(RUN_LABEL, 0)), int(labels.get(ATTEMPT_LABEL, 0))

    mine = [
        p
        for p in pods
        if (p["metadata"].get("labels") or {}).get(TRAINING_JOB_LABEL) == job
        and (run is None or key(p)[0] == run)
    ]
    if not mine:
        which = f"run {run} of " if run is not None else ""
        raise CliError(f"no training pod for {which}TrainingJob {job}")
    return str(max(mine, key=key)["metadata"]["name"])


def logs(args: argparse.Namespace) -> int:
    from kubernetes import client

    core: Any = client.CoreV1Api(_api(args))
    namespace = _namespace(args)
    pods = core.list_namespaced_pod(
        namespace, label_selector=f"{TRAINING_JOB_LABEL}={args.name}"
    ).to_dict()["items"]
    name = training_pod_name(pods, args.name, args.run)
    if not args.follow:
        print(core.read_namespaced_pod_log(name, namespace), end="")
        return 0
    stream = core.read_namespaced_pod_log(name, namespace, follow=True, _preload_content=False)
    for chunk in stream.stream():
        print(chunk.decode(errors="replace"), end="", flush=True)
    return 0


def register(sub: Any) -> None:
    tree = sub.add_parser("lineage", help="TrainingJob → ModelVersion → ModelDeployment as a tree")
    tree.add_argument("model", nargs="?", help="only this model")
    add_common(tree)
    tree.set_defaults(func=lineage)
    log = sub.add_parser("logs", help="logs of a TrainingJob's training pod")
    log.add_argument("name", help="TrainingJob name")
    log.add_argument("--run", type=int, help="run number (default: the newest)")
    log.add_argument("-f", "--follow", action="store_true")
    add_common(log)
    log.set_defaults(func=logs)
