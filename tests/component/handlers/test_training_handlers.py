"""The TrainingJob reconcile against kmock's Kubernetes emulator (an in-memory apiserver)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.support.builders import TrainingJobBuilder
from tests.support.kmock_api import kube_client

from kiln.handlers.training import TrainingController
from kiln.k8s.client import (
    MODEL_VERSIONS,
    PODS,
    TRAINING_JOBS,
    KubeClient,
)
from kiln.settings import OperatorSettings

pytestmark = pytest.mark.component

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SHA = "a" * 64


@pytest.fixture
async def client(kmock: Any) -> Any:
    kube = kube_client(kmock)
    yield kube
    await kube.close()


def controller(client: KubeClient) -> TrainingController:
    settings = OperatorSettings(trainer_image="kiln/trainer:test", metrics_port=0)
    return TrainingController(client, settings, clock=lambda: NOW)


def training_job(name: str = "iris", uid: str = "uid-1") -> dict[str, Any]:
    return (
        TrainingJobBuilder(name).uid(uid).output("s3://models").threshold("accuracy", min=0.9).obj()
    )


def report(accuracy: float) -> str:
    return json.dumps(
        {
            "ok": True,
            "artifact": {"uri": "s3://models/ml/iris/run-1/model.skops", "sha256": SHA},
            "metrics": {"accuracy": accuracy},
            "dataset": {"uri": "s3://d/iris.csv", "sha256": SHA},
            "versions": {"sklearn": "1.9"},
        }
    )


async def finish(client: KubeClient, pod: str, accuracy: float) -> None:
    terminated = {"exitCode": 0, "reason": "Completed", "message": report(accuracy)}
    await client.patch(
        PODS,
        "ml",
        pod,
        {
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}],
            }
        },
    )


async def test_a_job_gets_one_pod_then_one_approved_version(client: KubeClient) -> None:
    await client.create(TRAINING_JOBS, "ml", training_job())
    c = controller(client)
    await c.reconcile(("ml", "iris"))
    pods = await client.list(PODS, "ml")
    assert [p["metadata"]["name"] for p in pods] == ["iris-1-1"]
    assert pods[0]["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    job = await client.get(TRAINING_JOBS, "ml", "iris")
    assert job["status"]["phase"] == "Pending"
    assert job["status"]["runs"][0]["trigger"] == "create"

    await c.reconcile(("ml", "iris"))  # nothing new: no second pod
    assert len(await client.list(PODS, "ml")) == 1

    await finish(client, "iris-1-1", 0.97)
    await c.reconcile(("ml", "iris"))
    (version,) = await client.list(MODEL_VERSIONS, "ml")
    assert version["metadata"]["name"] == "iris-v1"
    assert version["metadata"]["labels"]["kiln.dev/run"] == "1"
    assert version["status"]["approval"]["state"] == "Approved"
    job = await client.get(TRAINING_JOBS, "ml", "iris")
    assert job["status"]["phase"] == "Succeeded"
    assert job["status"]["modelVersion"] == "iris-v1"

    await c.reconcile(("ml", "iris"))
    assert len(await client.list(MODEL_VERSIONS, "ml")) == 1


async def test_a_pod_created_before_a_crash_is_adopted(client: KubeClient) -> None:
    """The operator died between creating the pod and writing the status."""
    await client.create(TRAINING_JOBS, "ml", training_job())
    first = controller(client)
    await first.reconcile(("ml", "iris"))
    # Forget the status, as if its write had never happened.
    await client.patch(TRAINING_JOBS, "ml", "iris", {"status": {"runs": [], "run": 0}})
    await controller(client).reconcile(("ml", "iris"))
    assert [p["metadata"]["name"] for p in await client.list(PODS, "ml")] == ["iris-1-1"]


async def test_a_failing_gate_rejects_and_a_second_job_takes_the_next_number(
    client: KubeClient,
) -> None:
    await client.create(TRAINING_JOBS, "ml", training_job("a", "uid-a"))
    await client.create(TRAINING_JOBS, "ml", training_job("b", "uid-b"))
    c = controller(client)
    for name in ("a", "b"):
        await c.reconcile(("ml", name))
    await finish(client, "a-1-1", 0.5)
    await finish(client, "b-1-1", 0.95)
    await c.reconcile(("ml", "a"))
    await c.reconcile(("ml", "b"))
    versions = {v["metadata"]["name"]: v for v in await client.list(MODEL_VERSIONS, "ml")}
    assert sorted(versions) == ["iris-v1", "iris-v2"]
    assert versions["iris-v1"]["status"]["approval"]["state"] == "Rejected"
    assert "threshold/accuracy" in versions["iris-v1"]["status"]["approval"]["reason"]
    assert versions["iris-v2"]["status"]["approval"]["state"] == "Approved"


def requests_to(kmock: Any, method: str, suffix: str) -> int:
    return sum(
        1 for r in kmock if str(r.method).upper().endswith(method) and r.url.path.endswith(suffix)
    )


async def test_the_watchs_body_replaces_the_get_and_own_echoes_need_no_pass(
    client: KubeClient, kmock: Any
) -> None:
    body = await client.create(TRAINING_JOBS, "ml", training_job())
    body["metadata"]["resourceVersion"] = "10"
    c = controller(client)
    c.enqueue(("ml", "iris"), body)
    assert len(c.queue) == 1  # the creation: a pass is needed
    key = await c.queue.get()
    await c.reconcile(key)
    c.queue.done(key)
    assert requests_to(kmock, "GET", "/trainingjobs/iris") == 0  # the watch's copy was used
    (pod,) = await client.list(PODS, "ml")
    assert pod["metadata"]["name"] == "iris-1-1"
    # The watch showing the pod just created, untouched, or a change that observe_pod does
    # not see (a scheduling condition), needs no pass; a phase change does.
    assert not c.pod_changed("ADDED", pod)
    scheduled = {**pod, "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled"}]}}
    assert not c.pod_changed("MODIFIED", scheduled)
    assert c.pod_changed("MODIFIED", {**pod, "status": {"phase": "Running"}})
    assert c.pod_changed("DELETED", pod)
    await c.events.drain()
    assert requests_to(kmock, "POST", "/events") == 2  # RunStarted, AttemptStarted


async def test_a_copy_older_than_our_own_write_is_not_used(client: KubeClient, kmock: Any) -> None:
    """A body older than this controller's own last write is stale: it GETs instead."""
    await client.create(TRAINING_JOBS, "ml", training_job())
    c = controller(client)
    stale = await client.get(TRAINING_JOBS, "ml", "iris")
    stale["metadata"]["resourceVersion"] = "1"
    c.cache.observe(("ml", "iris"), stale)
    c.cache.learn(("ml", "iris"), {"metadata": {"resourceVersion": "5"}})  # as if we wrote 5
    await c.reconcile(("ml", "iris"))
    assert requests_to(kmock, "GET", "/trainingjobs/iris") == 2  # the test's and the pass's
    assert [p["metadata"]["name"] for p in await client.list(PODS, "ml")] == ["iris-1-1"]
    job = await client.get(TRAINING_JOBS, "ml", "iris")
    assert job["status"]["run"] == 1


# --- the trainer's phase, from the pod's log ----------------------------------------------

LOG_PATH = "/api/v1/namespaces/ml/pods/iris-1-1/log"
STATUS_PATH = "/apis/kiln.dev/v1alpha1/namespaces/ml/trainingjobs/iris/status"
PHASE_TS = 1_780_000_000.25


def phase_line(event: str, phase: str, ts: float, **fields: Any) -> str:
    return json.dumps({"ts": ts, "level": "info", "event": event, "phase": phase, **fields})


def log_controller(client: KubeClient, interval: float) -> TrainingController:
    settings = OperatorSettings(
        trainer_image="kiln/trainer:test", metrics_port=0, trainer_log_interval_seconds=interval
    )
    return TrainingController(client, settings, clock=lambda: NOW)


async def start_running(client: KubeClient, c: TrainingController) -> None:
    await client.create(TRAINING_JOBS, "ml", training_job())
    await c.reconcile(("ml", "iris"))
    running = {"name": "trainer", "state": {"running": {"startedAt": "2026-05-01T12:00:00Z"}}}
    await client.patch(
        PODS, "ml", "iris-1-1", {"status": {"phase": "Running", "containerStatuses": [running]}}
    )


def log_reads(kmock: Any) -> list[Any]:
    return [r for r in kmock if r.method.upper() == "GET" and r.url.path == LOG_PATH]


async def test_a_running_pods_log_puts_the_trainers_phase_in_status_without_idle_writes(
    client: KubeClient, kmock: Any
) -> None:
    c = log_controller(client, interval=3600)
    await start_running(client, c)
    tail = [
        phase_line("phase.start", "load", PHASE_TS),
        phase_line("phase.end", "load", PHASE_TS + 2, seconds=2.0),
        json.dumps({"ts": PHASE_TS + 2, "event": "dataset.loaded", "rows": 150}),
        phase_line("phase.start", "fit", PHASE_TS + 2.5),
        '{"ts": 1780000003, "event": "fit.warn',  # the trainer is writing this line
    ]
    kmock[f"get {LOG_PATH}"] << "\n".join(tail).encode()

    delay = await c.reconcile(("ml", "iris"))
    status = (await client.get(TRAINING_JOBS, "ml", "iris"))["status"]
    (run,) = status["runs"]
    assert run["phase"] == "Running"
    assert run["trainer"] == {
        "pod": "iris-1-1",
        "phase": "fit",
        "phaseStartTime": "2026-05-28T20:26:42Z",
        "phases": [
            {"phase": "load", "startTime": "2026-05-28T20:26:40Z", "seconds": 2.0},
            {"phase": "fit", "startTime": "2026-05-28T20:26:42Z"},
        ],
        "finished": False,
    }
    assert status["trainer"] == run["trainer"]  # the newest run's, for the printer column
    (read,) = log_reads(kmock)
    assert dict(read.params) == {"container": "trainer", "tailLines": "100"}
    # While the pod runs, the next look comes within the interval.
    assert delay is not None and 3600 <= delay < 3601

    writes = requests_to(kmock, "PATCH", STATUS_PATH)
    assert writes == 2  # the run started, then its trainer's phase
    await c.reconcile(("ml", "iris"))  # not due: no read, nothing moved, no write
    assert len(log_reads(kmock)) == 1
    assert requests_to(kmock, "PATCH", STATUS_PATH) == writes


async def test_a_due_read_that_shows_nothing_new_writes_nothing(
    client: KubeClient, kmock: Any
) -> None:
    c = log_controller(client, interval=0.01)
    await start_running(client, c)
    kmock[f"get {LOG_PATH}"] << phase_line("phase.start", "fit", PHASE_TS).encode()
    await c.reconcile(("ml", "iris"))
    writes = requests_to(kmock, "PATCH", STATUS_PATH)
    assert writes == 2
    await asyncio.sleep(0.02)
    await c.reconcile(("ml", "iris"))
    assert len(log_reads(kmock)) == 2
    assert requests_to(kmock, "PATCH", STATUS_PATH) == writes


@pytest.mark.parametrize(
    ("code", "reason"),
    # The operator's Role lacks pods/log (an older install), the pod is gone from the
    # kubelet, or the kubelet is away.
    [(403, "Forbidden"), (404, "NotFound"), (502, "BadGateway")],
)
async def test_a_refused_log_read_leaves_the_phase_and_the_pass_alone(
    client: KubeClient, kmock: Any, code: int, reason: str
) -> None:
    c = log_controller(client, interval=3600)
    await start_running(client, c)
    await c.reconcile(("ml", "iris"))  # Running recorded
    job = await client.get(TRAINING_JOBS, "ml", "iris")
    seen = {"pod": "iris-1-1", "phase": "load", "phaseStartTime": "2026-05-01T12:00:01Z",
            "phases": [{"phase": "load", "startTime": "2026-05-01T12:00:01Z"}],
            "finished": False}  # fmt: skip
    runs = [{**job["status"]["runs"][0], "trainer": seen}]
    await client.patch(TRAINING_JOBS, "ml", "iris", {"status": {"runs": runs, "trainer": seen}})
    refusal = {"kind": "Status", "status": "Failure", "reason": reason, "code": code}
    kmock[f"get {LOG_PATH}"] << code << refusal

    fresh = log_controller(client, interval=3600)  # nothing read yet: the read is due
    reads = len(log_reads(kmock))
    delay = await fresh.reconcile_reporting_failures(("ml", "iris"))

    assert len(log_reads(kmock)) == reads + 1
    job = await client.get(TRAINING_JOBS, "ml", "iris")
    assert job["status"]["runs"][0]["trainer"] == seen
    (reconciling,) = [x for x in job["status"]["conditions"] if x["type"] == "Reconciling"]
    assert reconciling["reason"] == "Running"
    assert not [x for x in job["status"]["conditions"] if x["type"] == "Stalled"]
    assert delay is not None and delay >= 3600  # the next read at the interval, not sooner


async def test_the_finished_pods_report_gives_the_exact_phase_timeline(
    client: KubeClient, kmock: Any
) -> None:
    c = log_controller(client, interval=0.01)
    await start_running(client, c)
    kmock[f"get {LOG_PATH}"] << phase_line("phase.start", "fit", PHASE_TS).encode()
    await c.reconcile(("ml", "iris"))
    message = json.loads(report(0.97))
    message["phaseStarts"] = {"load": PHASE_TS - 3, "fit": PHASE_TS, "evaluate": PHASE_TS + 4,
                              "upload": PHASE_TS + 5}  # fmt: skip
    message["durationSeconds"] = {"load": 3.0, "fit": 4.0, "evaluate": 0.5, "upload": 0.7}
    terminated = {"exitCode": 0, "reason": "Completed", "message": json.dumps(message)}
    await client.patch(
        PODS,
        "ml",
        "iris-1-1",
        {
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}],
            }
        },
    )
    reads = len(log_reads(kmock))
    await asyncio.sleep(0.02)
    delay = await c.reconcile(("ml", "iris"))
    assert len(log_reads(kmock)) == reads  # ended: the report, not the log
    status = (await client.get(TRAINING_JOBS, "ml", "iris"))["status"]
    trainer = status["runs"][0]["trainer"]
    assert status["phase"] == "Succeeded" and trainer["finished"] is True
    assert [(p["phase"], p["seconds"]) for p in trainer["phases"]] == [
        ("load", 3.0),
        ("fit", 4.0),
        ("evaluate", 0.5),
        ("upload", 0.7),
    ]
    assert trainer["phase"] == "upload" and delay is None
