"""Monitoring of the stable track by the ModelDeployment controller, against kmock.

Prometheus is a small local aiohttp server answering the drift and capture queries with
chosen bin counts, through the real PromQL client; the capture bucket is an in-memory
object store behind the reader's store interface; the baseline is a file:// object
verified by its sha256 like any artifact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY
from tests.support.builders import ModelDeploymentBuilder, ModelVersionBuilder
from tests.support.kmock_api import kube_client
from tests.support.matchers import condition, has_condition, posted_events
from tests.support.ports import free_port

from kiln.contract.monitoring import (
    Baseline,
    Distribution,
    FeatureProfile,
    FeedbackRecord,
    PredictionRecord,
    object_key,
)
from kiln.handlers.deployment import DeploymentController
from kiln.k8s.client import DEPLOYMENTS, MODEL_DEPLOYMENTS, MODEL_VERSIONS
from kiln.services.monitoring import MonitoringReader
from kiln.services.prometheus import PrometheusClient
from kiln.settings import OperatorSettings
from kiln.store import StoreError

pytestmark = pytest.mark.component

NS = "prod"
DESTINATION = "s3://capture/iris"
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
SHARES = [0.25, 0.25, 0.25, 0.25]
MONITORING = {
    "windowSeconds": 300,
    "intervalSeconds": 60,
    "drift": {"psiThreshold": 0.2, "minSamples": 100},
    "quality": {"minLabelled": 50},
    "capture": {"destination": DESTINATION, "flushSeconds": 10},
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeBucket:
    """An S3 bucket in memory (object URI -> bytes); `down` makes every call fail."""

    objects: dict[str, bytes] = field(default_factory=dict)
    down: bool = False

    def list(self, prefix: str) -> list[str]:
        if self.down:
            raise StoreError(f"{prefix}: connection refused")
        return sorted(uri for uri in self.objects if uri.startswith(prefix))

    def read(self, uri: str) -> bytes:
        if self.down:
            raise StoreError(f"{uri}: connection refused")
        return self.objects[uri]

    def put(self, kind: str, records: Sequence[Any], first: datetime, seq: int) -> None:
        key = object_key(DESTINATION, NS, "iris", kind, first, "iris-stable-abc", seq)  # type: ignore[arg-type]
        self.objects[key] = "\n".join(r.model_dump_json() for r in records).encode()


@dataclass
class FakePrometheus:
    """Answers kiln_feature_bin_total queries with `bins` (feature -> bin -> count)."""

    bins: dict[str, dict[str, float]] = field(default_factory=dict)
    capture: dict[str, float] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        promql = str((await request.post())["query"])
        self.queries.append(promql)
        result: list[dict[str, Any]] = []
        if "kiln_feature_bin_total" in promql:
            for feature, bins in self.bins.items():
                for b, value in bins.items():
                    result.append(
                        {"metric": {"feature": feature, "bin": b}, "value": [0, str(value)]}
                    )
        elif "kiln_capture_records_total" in promql:
            result = [
                {"metric": {"result": r}, "value": [0, str(v)]} for r, v in self.capture.items()
            ]
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )


def baseline_file(tmp_path: Path) -> tuple[str, str]:
    baseline = Baseline(
        rows=120,
        features=[
            FeatureProfile(
                name=name,
                kind="numeric",
                distribution=Distribution(edges=[1.0, 2.0, 3.0], shares=SHARES, count=120),
            )
            for name in FEATURES
        ],
    )
    data = baseline.model_dump_json().encode()
    path = tmp_path / "baseline.json"
    path.write_bytes(data)
    return f"file://{path}", hashlib.sha256(data).hexdigest()


def even(n: int) -> dict[str, float]:
    return {str(i): n / 4 for i in range(4)}


@dataclass
class World:
    controller: DeploymentController
    kmock: Any
    prometheus: FakePrometheus
    bucket: FakeBucket
    clock: Clock

    async def reconcile(self) -> dict[str, Any]:
        await self.controller.reconcile((NS, "iris"))
        return dict((await self.controller.client.get(MODEL_DEPLOYMENTS, NS, "iris"))["status"])

    async def events(self) -> list[tuple[str, str, str]]:
        await self.controller.events.drain()
        return [(e["type"], e["reason"], e["message"]) for e in posted_events(self.kmock)]


@pytest.fixture
async def world(kmock: Any, tmp_path: Path) -> AsyncIterator[World]:
    client = kube_client(kmock)
    fake = FakePrometheus()
    app = web.Application()
    app.router.add_post("/api/v1/query", fake.handle)
    bucket = FakeBucket()
    clock = Clock()
    async with TestServer(app, host="127.0.0.1") as server:
        prometheus = PrometheusClient(str(server.make_url("/")))
        monitor = MonitoringReader(client, prometheus, None, store_factory=lambda env: bucket)
        controller = DeploymentController(
            client,
            OperatorSettings(server_image="kiln/server:test", workers=1),
            prometheus,
            clock=clock,
            monitor=monitor,
        )
        uri, sha = baseline_file(tmp_path)
        version = (
            ModelVersionBuilder("iris", 1, NS)
            .approved()
            .metrics(accuracy=0.96, f1_macro=0.95)
            .spec(
                baseline={"uri": uri, "sha256": sha},
                inputSchema={
                    "features": [{"name": f} for f in FEATURES],
                    "classes": ["setosa", "versicolor", "virginica"],
                },
            )
            .obj()
        )
        await client.create(MODEL_VERSIONS, NS, version)
        md = ModelDeploymentBuilder("iris", NS).uid("md-uid").spec(monitoring=MONITORING).obj()
        await client.create(MODEL_DEPLOYMENTS, NS, md)
        w = World(controller, kmock, fake, bucket, clock)
        await controller.reconcile((NS, "iris"))  # creates iris-stable
        await mark_ready(controller, "iris-stable")
        yield w
        await prometheus.close()
    await client.close()


async def mark_ready(c: DeploymentController, name: str) -> None:
    current = await c.client.get(DEPLOYMENTS, NS, name)
    replicas = current["spec"]["replicas"]
    ready = {
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }
    await c.client.patch(DEPLOYMENTS, NS, name, {"status": ready}, subresource="status")


def capture(w: World, n: int, *, right: int) -> None:
    """n captured predictions of iris-v1 on stable, `right` of them labelled correctly."""
    start = w.clock.now - timedelta(seconds=120)
    predictions = [
        PredictionRecord(
            id=f"req-{i}",
            time=start + timedelta(seconds=i % 60),
            model="iris",
            version="iris-v1",
            track="stable",
            inputs={"petal_length": 1.4},
            prediction="setosa",
        )
        for i in range(n)
    ]
    labels = [
        FeedbackRecord(
            id=f"req-{i}",
            time=start + timedelta(seconds=i % 60 + 30),
            label="setosa" if i < right else "virginica",
        )
        for i in range(n)
    ]
    w.bucket.put("predictions", predictions, start, 1)
    w.bucket.put("feedback", labels, start + timedelta(seconds=30), 1)


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"namespace": NS, "deployment": "iris", **labels})


async def test_drift_and_quality_of_the_stable_track(world: World) -> None:
    w = world
    # Few rows, no labels: not enough data, never "no drift".
    w.prometheus.bins = {f: even(20) for f in FEATURES}
    status = await w.reconcile()
    assert status["phase"] == "Promoted"
    assert has_condition(
        status, "Drifting", "Unknown", reason="NotEnoughData", message_has=["20 rows", "300s"]
    )
    assert has_condition(status, "QualityDegraded", "Unknown", reason="NotEnoughData")
    assert status["monitoring"]["drift"]["version"] == "iris-v1"
    assert status["monitoring"]["lastEvaluatedTime"] == "2026-03-01T12:30:00Z"

    # Traffic from the training distribution and correct labels: no drift, quality holds.
    w.clock.advance(60)
    w.prometheus.bins = {f: even(400) for f in FEATURES}
    capture(w, 100, right=99)
    status = await w.reconcile()
    assert has_condition(status, "Drifting", "False", reason="NoDrift")
    assert has_condition(
        status,
        "QualityDegraded",
        "False",
        reason="WithinBound",
        message_has=["accuracy 0.99 live vs 0.96 training"],
    )
    quality = status["monitoring"]["quality"]
    assert (quality["labelled"], quality["captured"], quality["labelDelaySeconds"]) == (
        100,
        100,
        30,
    )
    assert gauge("kiln_live_quality", version="iris-v1", metric="accuracy") == 0.99
    assert gauge("kiln_training_quality", version="iris-v1", metric="accuracy") == 0.96
    assert gauge("kiln_monitoring_labelled_predictions", version="iris-v1") == 100

    # Before the interval is up nothing is measured again.
    asked = len(w.prometheus.queries)
    w.clock.advance(20)
    delay = await w.controller.reconcile((NS, "iris"))
    assert len(w.prometheus.queries) == asked and delay == 40

    # One feature shifted (e.g. petal length + 3 cm: every value in the top bin).
    w.clock.advance(40)
    w.prometheus.bins["petal_length"] = {"3": 400}
    status = await w.reconcile()
    assert has_condition(
        status,
        "Drifting",
        "True",
        reason="DriftDetected",
        message_has=["petal_length PSI", "400 rows", "300s"],
    )
    drifting = condition(status, "Drifting")
    assert drifting is not None
    for other in ("sepal_length", "sepal_width", "petal_width"):
        assert other not in drifting["message"]
    assert status["monitoring"]["drift"]["driftingFeatures"] == ["petal_length"]
    assert status["monitoring"]["drift"]["features"][0]["feature"] == "petal_length"
    psi = gauge("kiln_feature_drift", version="iris-v1", feature="petal_length")
    assert psi is not None and psi > 1

    # Labels contradicting the predictions.
    w.clock.advance(60)
    w.bucket.objects.clear()
    capture(w, 100, right=10)
    status = await w.reconcile()
    assert has_condition(
        status,
        "QualityDegraded",
        "True",
        reason="BelowBound",
        message_has=["accuracy 0.1 live vs 0.96 training (bound 0.91)", "100 labelled"],
    )
    assert status["monitoring"]["quality"]["live"] == 0.1

    events = await w.events()
    monitoring = [
        (t, r)
        for t, r, _ in events
        if r
        in {
            "DriftDetected",
            "DriftResolved",
            "NoDrift",
            "DriftUnknown",
            "QualityDegraded",
            "QualityRecovered",
            "QualityOK",
            "QualityUnknown",
        }
    ]
    assert monitoring == [
        ("Normal", "DriftUnknown"),
        ("Normal", "QualityUnknown"),
        ("Normal", "NoDrift"),
        ("Normal", "QualityOK"),
        ("Warning", "DriftDetected"),
        ("Warning", "QualityDegraded"),
    ]
    assert any("petal_length" in m for _, r, m in events if r == "DriftDetected")

    # The same evaluation again (a restarted operator, a repeated pass): no second Event.
    restarted = DeploymentController(
        w.controller.client,
        w.controller.settings,
        w.controller.prometheus,
        clock=w.clock,
        monitor=w.controller.monitor,
    )
    await restarted.reconcile((NS, "iris"))
    await restarted.events.drain()
    assert len(await w.events()) == len(events)


async def test_unreachable_prometheus_and_store_are_unknown_not_a_crash(world: World) -> None:
    w = world
    broken = PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout=1)
    w.controller.monitor.prometheus = broken
    w.bucket.down = True
    status = await w.reconcile()
    assert has_condition(
        status, "Drifting", "Unknown", reason="PrometheusUnavailable", message_has=["127.0.0.1"]
    )
    assert has_condition(
        status,
        "QualityDegraded",
        "Unknown",
        reason="CaptureUnavailable",
        message_has=["connection refused"],
    )
    assert has_condition(status, "Ready", "True")
    await broken.close()


async def test_a_baseline_with_the_wrong_digest_is_refused(world: World, tmp_path: Path) -> None:
    w = world
    (tmp_path / "baseline.json").write_text(json.dumps({"rows": 1, "features": []}))
    w.prometheus.bins = {f: even(400) for f in FEATURES}
    status = await w.reconcile()
    assert has_condition(
        status, "Drifting", "Unknown", reason="BaselineIntegrityError", message_has=["sha256"]
    )


async def test_switching_monitoring_off_clears_it(world: World) -> None:
    w = world
    w.prometheus.bins = {f: even(400) for f in FEATURES}
    status = await w.reconcile()
    assert condition(status, "Drifting") is not None
    await w.controller.client.patch(MODEL_DEPLOYMENTS, NS, "iris", {"spec": {"monitoring": None}})
    status = await w.reconcile()
    assert condition(status, "Drifting") is None and condition(status, "QualityDegraded") is None
    assert "monitoring" not in status
    assert gauge("kiln_feature_drift", version="iris-v1", feature="petal_length") is None


async def test_a_value_that_went_away_leaves_the_status(world: World) -> None:
    """A merge patch keeps nested fields it does not name: the controller nulls them."""
    w = world
    w.prometheus.bins = {f: even(400) for f in FEATURES}
    capture(w, 100, right=99)
    status = await w.reconcile()
    assert status["monitoring"]["quality"]["live"] == 0.99
    w.clock.advance(60)
    w.bucket.objects.clear()
    status = await w.reconcile()
    assert has_condition(status, "QualityDegraded", "Unknown", reason="NotEnoughData")
    quality = status["monitoring"]["quality"]
    assert "live" not in quality and "labelDelaySeconds" not in quality
    assert quality["labelled"] == 0
