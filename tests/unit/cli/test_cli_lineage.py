from __future__ import annotations

from typing import Any

import pytest

from kiln.cli.lineage import lineage_tree, training_pod_name
from kiln.cli.versions import CliError

pytestmark = pytest.mark.unit


def _job(name: str, phase: str = "Succeeded") -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"model": "iris"}, "status": {"phase": phase}}


def _mv(version: int, job: str, approval: str = "Approved", parent: str | None = None) -> dict:
    annotations = {"lineage.kiln.dev/dataset": "s3://d/iris.csv@sha256:abc"}
    if parent:
        annotations["lineage.kiln.dev/parent-version"] = parent
    return {
        "metadata": {
            "name": f"iris-v{version}",
            "labels": {"kiln.dev/training-job": job, "kiln.dev/run": str(version)},
            "annotations": annotations,
        },
        "spec": {"model": "iris", "version": version, "metrics": {"accuracy": 0.97368}},
        "status": {"approval": {"state": approval}},
    }


def test_tree_links_runs_versions_parents_and_serving_tracks() -> None:
    md = {
        "metadata": {"name": "iris"},
        "status": {
            "stableVersion": "iris-v1",
            "canaryVersion": "iris-v2",
            "canaryWeight": 50,
            "phase": "Progressing",
        },
    }
    lines = lineage_tree([_job("iris")], [_mv(2, "iris", parent="iris-v1"), _mv(1, "iris")], [md])
    assert lines == [
        "TrainingJob iris (model iris, Succeeded)",
        "├── run 1 → ModelVersion iris-v1  Approved  accuracy=0.9737  "
        "data s3://d/iris.csv@sha256:abc",
        "│   └── served by ModelDeployment iris (stable, Progressing)",
        "└── run 2 → ModelVersion iris-v2  Approved  accuracy=0.9737  parent iris-v1  "
        "data s3://d/iris.csv@sha256:abc",
        "    └── served by ModelDeployment iris (canary 50%, Progressing)",
    ]


def test_versions_of_a_deleted_job_are_still_shown() -> None:
    lines = lineage_tree([], [_mv(1, "gone", approval="Rejected")], [])
    assert lines[0] == "(ModelVersions whose TrainingJob is gone)"
    assert "iris-v1  Rejected" in lines[1]


def _pod(name: str, job: str, run: int, attempt: int) -> dict[str, Any]:
    labels = {
        "kiln.dev/training-job": job,
        "kiln.dev/run": str(run),
        "kiln.dev/attempt": str(attempt),
    }
    return {"metadata": {"name": name, "labels": labels}}


def test_logs_pick_the_newest_attempt_of_the_requested_run() -> None:
    pods = [
        _pod("iris-1-1", "iris", 1, 1),
        _pod("iris-2-1", "iris", 2, 1),
        _pod("iris-2-2", "iris", 2, 2),
        _pod("other-3-1", "other", 3, 1),
    ]
    assert training_pod_name(pods, "iris", None) == "iris-2-2"
    assert training_pod_name(pods, "iris", 1) == "iris-1-1"
    with pytest.raises(CliError, match="no training pod for run 7 of TrainingJob iris"):
        training_pod_name(pods, "iris", 7)
