"""Continuous training and the fairness gate on a real control plane.

The triggers (cron schedule, dataset change) and the fairness gate are decided by pure
functions with their own unit tests; these tests show the whole loop a user relies on:
the operator notices the trigger on its own, starts a numbered run, trains in a pod and
registers the next version, or rejects a model that treats groups unequally.
"""

from __future__ import annotations

import csv
import io
import random
import secrets
from typing import Any

import pytest
from tests.e2e import test_training as training
from tests.e2e.conftest import Kube
from tests.e2e.test_training import BUCKET, ROOT, create, custom, get, training_pods, wait_approved
from tests.support.k8s import wait_for

# The training module's fixtures: the CRDs, the operator on the host, S3, a namespace.
crds, operator, s3, ns = training.crds, training.operator, training.s3, training.ns

pytestmark = pytest.mark.e2e


def upload(s3: Any, body: bytes) -> str:
    key = f"e2e-{secrets.token_hex(4)}/data.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


def status(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return dict((get(kube, ns, "trainingjobs", name) or {}).get("status") or {})


def run_record(kube: Kube, ns: str, name: str, run: int) -> dict[str, Any] | None:
    for record in status(kube, ns, name).get("runs") or []:
        if record["run"] == run:
            return dict(record)
    return None


def test_dataset_change_starts_a_new_run_and_old_pods_follow_the_history_limit(
    kube: Kube, ns: str, s3: Any
) -> None:
    iris = (ROOT / "examples/data/iris.csv").read_bytes()
    uri = upload(s3, iris)
    triggers = {"datasetChange": {"pollIntervalSeconds": 30}, "successfulRunsHistoryLimit": 1}
    create(kube, ns, training.training_job("iris", uri, triggers=triggers))
    v1 = wait_approved(kube, ns, "iris-v1")
    # The first probe records the baseline; only a later change starts a run.
    wait_for(lambda: status(kube, ns, "iris").get("datasetDigest"), 30, "a dataset digest")
    assert run_record(kube, ns, "iris", 2) is None

    # New data under the same URI: a new upload (drop the last ten rows).
    lines = iris.decode().splitlines(keepends=True)
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3.put_object(Bucket=bucket, Key=key, Body="".join(lines[:-10]).encode())

    v2 = wait_approved(kube, ns, "iris-v2", timeout=120)
    record = run_record(kube, ns, "iris", 2)
    assert record is not None and record["trigger"] == "datasetChange"
    assert v2["metadata"]["annotations"]["lineage.kiln.dev/parent-version"] == "iris-v1"
    # Lineage names the data each version was trained on: not the same bytes.
    dataset_v1 = v1["metadata"]["annotations"]["lineage.kiln.dev/dataset"]
    dataset_v2 = v2["metadata"]["annotations"]["lineage.kiln.dev/dataset"]
    assert dataset_v1.split("@")[0] == dataset_v2.split("@")[0] == uri
    assert dataset_v1 != dataset_v2

    # successfulRunsHistoryLimit: 1 keeps run 2's pod only.
    wait_for(
        lambda: [p.metadata.name for p in training_pods(kube, ns)] == ["iris-2-1"],
        30,
        "run 1's pod pruned",
    )


def test_cron_schedule_starts_numbered_runs(kube: Kube, ns: str, s3: Any) -> None:
    uri = upload(s3, (ROOT / "examples/data/iris.csv").read_bytes())
    triggers = {"schedule": "* * * * *", "concurrencyPolicy": "Forbid"}
    create(kube, ns, training.training_job("iris", uri, triggers=triggers))
    wait_approved(kube, ns, "iris-v1")
    assert run_record(kube, ns, "iris", 1)["trigger"] == "create"  # type: ignore[index]

    # The next minute boundary starts run 2 with no one touching the object.
    v2 = wait_approved(kube, ns, "iris-v2", timeout=150)
    record = run_record(kube, ns, "iris", 2)
    assert record is not None and record["trigger"] == "schedule"
    assert status(kube, ns, "iris")["lastScheduleTime"]
    assert v2["metadata"]["labels"]["kiln.dev/run"] == "2"

    # Editing only the triggers retrains nothing; suspended, the next minute is skipped.
    custom(kube).patch_namespaced_custom_object(
        training.GROUP,
        training.VERSION,
        ns,
        "trainingjobs",
        "iris",
        {"spec": {"triggers": {"suspend": True}}},
    )
    runs = status(kube, ns, "iris")["run"]
    skipped = wait_for(
        lambda: [m for m in event_messages(kube, ns, "iris", "RunSkipped") if "Suspended" in m],
        90,
        "the next schedule time to be skipped while suspended",
    )
    assert "schedule" in skipped[0]
    assert status(kube, ns, "iris")["run"] == runs
    assert status(kube, ns, "iris")["observedGeneration"] == 2


def event_messages(kube: Kube, ns: str, name: str, reason: str) -> list[str]:
    selector = f"involvedObject.name={name},reason={reason}"
    return [e.message for e in kube.core.list_namespaced_event(ns, field_selector=selector).items]


def unfair_dataset(rows: int = 600, seed: int = 3) -> bytes:
    """Labels follow the features for group a and are coin flips for group b."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["income", "debt", "group", "approved"])
    for i in range(rows):
        income, debt = round(rng.random(), 4), round(rng.random(), 4)
        group = "a" if i % 2 == 0 else "b"
        good = income > debt if group == "a" else rng.random() < 0.5
        writer.writerow([income, debt, group, "yes" if good else "no"])
    return out.getvalue().encode()


def loans_job(name: str, uri: str, *, max_gap: float) -> dict[str, Any]:
    body = training.training_job(name, uri, model=name)
    body["spec"].update(
        dataset={"uri": uri, "target": "approved", "sensitiveColumn": "group"},
        evaluation={"testSize": 0.3, "seed": 7, "metrics": ["accuracy"]},
        registration={
            "fairness": {"sensitiveColumn": "group", "metric": "accuracy", "maxGap": max_gap}
        },
    )
    return body


def test_fairness_gate_rejects_a_model_with_a_large_gap_between_groups(
    kube: Kube, ns: str, s3: Any
) -> None:
    uri = upload(s3, unfair_dataset())
    body = loans_job("loans", uri, max_gap=0.1)
    create(kube, ns, body)

    def decided() -> dict[str, Any] | None:
        mv = get(kube, ns, "modelversions", "loans-v1")
        state = ((mv or {}).get("status") or {}).get("approval", {}).get("state")
        return mv if state in ("Approved", "Rejected") else None

    mv = wait_for(decided, 120, "loans-v1 decided", interval=0.5)
    approval = mv["status"]["approval"]
    assert approval["state"] == "Rejected", approval
    (strict,) = [c for c in approval["checks"] if c["name"] == "fairness/group/accuracy"]
    assert strict["passed"] is False
    assert strict["value"] > 0.1 and strict["max"] == 0.1
    assert "gap across group" in strict["message"]
    assert kube.core.list_namespaced_pod(ns).items  # it trained; the gate, not a crash, said no

    # The same data, seed and estimator under a gate it can meet: Approved, same gap.
    lenient = loans_job("loans-lenient", uri, max_gap=0.9)
    create(kube, ns, lenient)
    approved = wait_approved(kube, ns, "loans-lenient-v1")
    (check,) = approved["status"]["approval"]["checks"]
    assert check["name"] == "fairness/group/accuracy" and check["passed"] is True
    assert check["value"] == pytest.approx(strict["value"])
