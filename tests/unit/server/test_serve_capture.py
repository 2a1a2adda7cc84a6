"""Inference ids, data capture (queue, batches, drops, retries) and the feedback endpoint."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from tests.support.serving import infer_body, iris_logistic_regression

from kiln.contract.monitoring import (
    INFERENCE_ID_HEADER,
    FeedbackRecord,
    PredictionRecord,
    hour_prefix,
)
from kiln.server import capture as capture_module
from kiln.server.capture import CaptureWriter, ColumnLayout, sampled
from kiln.server.config import CaptureConfig
from kiln.server.predictor import build_predictor
from kiln.server.service import InferenceService, ServiceSettings

pytestmark = pytest.mark.unit

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.8, 2.8, 4.8, 1.4]]
DESTINATION = "s3://capture/kiln"


class FakeStore:
    """An object store that can be switched down; puts are recorded."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.down = False
        self.attempts = 0
        self.lock = threading.Lock()

    def put(self, uri: str, data: bytes, *, content_type: str = "") -> None:
        with self.lock:
            self.attempts += 1
            if self.down:
                raise ConnectionError("store is down")
            self.objects[uri] = data

    def records(self, kind: str = "predictions") -> list[dict[str, Any]]:
        with self.lock:
            found = [
                json.loads(line)
                for key, body in sorted(self.objects.items())
                if f"/{kind}/" in key
                for line in body.decode().splitlines()
            ]
        return found


def config(**overrides: Any) -> CaptureConfig:
    values: dict[str, Any] = {
        "destination": DESTINATION,
        "namespace": "ml",
        "deployment": "iris",
        "pod": "iris-stable-abc",
        "max_records": 1000,
        "flush_seconds": 60.0,
        "queue_records": 10_000,
    }
    values.update(overrides)
    return CaptureConfig(**values)


def writer(store: FakeStore, **overrides: Any) -> CaptureWriter:
    made = CaptureWriter(
        config(**overrides), model="iris", version="3", track="canary", pod="iris-stable-abc",
        store=store,
    )  # fmt: skip
    made.set_columns(ColumnLayout(("a", "b")))
    return made


def offer(target: CaptureWriter, request_id: str, rows: int = 1) -> bool:
    features = np.arange(rows * 2, dtype=np.float64).reshape(rows, 2)
    return target.offer_predictions(request_id, features, np.arange(rows), None)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture_module, "RETRY_FIRST_SECONDS", 0.02)
    monkeypatch.setattr(capture_module, "RETRY_MAX_SECONDS", 0.05)
    monkeypatch.setattr(capture_module, "POLL_SECONDS", 0.01)


# -- the writer ------------------------------------------------------------------------


def test_a_full_batch_is_written_as_one_object_at_the_contract_key() -> None:
    store = FakeStore()
    capture = writer(store, max_records=5)
    capture.start()
    for index in range(2):
        assert offer(capture, f"req{index}", rows=3)
    wait_for(lambda: capture.counts()[0]["written"] == 5)
    capture.close(2.0)
    keys = sorted(store.objects)
    assert len(keys) == 2  # 5 records by count, then the last one at shutdown
    first = datetime.now(UTC)
    assert keys[0].startswith(hour_prefix(DESTINATION, "ml", "iris", "predictions", first)[:-3])
    assert keys[0].endswith("-000000.jsonl") and keys[1].endswith("-000001.jsonl")
    assert "/iris-stable-abc-" in keys[0]
    records = [PredictionRecord.model_validate(r) for r in store.records()]
    assert [(r.id, r.row) for r in records] == [
        ("req0", 0), ("req0", 1), ("req0", 2), ("req1", 0), ("req1", 1), ("req1", 2)
    ]  # fmt: skip
    assert records[4].inputs == {"a": 2.0, "b": 3.0}
    assert records[4].prediction == 1
    assert (records[0].model, records[0].version, records[0].track) == ("iris", "3", "canary")
    assert capture.counts() == ({"written": 6, "dropped": 0, "failed": 0}, 0)


def test_a_batch_is_written_after_flush_seconds_even_when_not_full() -> None:
    store = FakeStore()
    capture = writer(store, max_records=1000, flush_seconds=0.2)
    capture.start()
    started = time.monotonic()
    offer(capture, "only")
    wait_for(lambda: len(store.objects) == 1)
    assert time.monotonic() - started >= 0.19
    assert capture.counts()[0]["written"] == 1
    capture.close(1.0)


def test_records_that_do_not_fit_the_queue_are_dropped_and_counted() -> None:
    store = FakeStore()
    capture = writer(store, queue_records=4)  # not started: nothing drains the queue
    assert offer(capture, "a", rows=3)
    assert not offer(capture, "b", rows=2)  # 3 + 2 > 4: the whole request is dropped
    assert offer(capture, "c", rows=1)
    assert not offer(capture, "d", rows=1)
    assert capture.counts() == ({"written": 0, "dropped": 3, "failed": 0}, 4)


def test_while_the_store_is_down_the_batch_is_kept_new_records_drop_then_writes_resume() -> None:
    store = FakeStore()
    store.down = True
    capture = writer(store, max_records=2, queue_records=4)
    capture.start()
    offer(capture, "kept-1")
    offer(capture, "kept-2")  # a full batch: the writer takes it and retries
    wait_for(lambda: store.attempts >= 3)
    for index in range(4):
        assert offer(capture, f"queued-{index}")
    assert not offer(capture, "dropped")
    counts, depth = capture.counts()
    assert counts == {"written": 0, "dropped": 1, "failed": 0} and depth == 4
    store.down = False
    wait_for(lambda: capture.counts()[0]["written"] == 6)
    capture.close(1.0)
    ids = [record["id"] for record in store.records()]
    assert ids == ["kept-1", "kept-2", "queued-0", "queued-1", "queued-2", "queued-3"]
    assert capture.counts() == ({"written": 6, "dropped": 1, "failed": 0}, 0)


def test_shutdown_flushes_what_is_queued() -> None:
    store = FakeStore()
    capture = writer(store)
    capture.start()
    for index in range(7):
        offer(capture, f"r{index}")
    capture.close(2.0)
    assert len(store.records()) == 7
    assert capture.counts()[0]["written"] == 7


def test_records_still_unwritten_when_shutdown_time_runs_out_count_as_failed() -> None:
    store = FakeStore()
    store.down = True
    capture = writer(store)
    capture.start()
    for index in range(3):
        offer(capture, f"r{index}")
    capture.close(0.3)
    assert capture.counts() == ({"written": 0, "dropped": 0, "failed": 3}, 0)


def test_sampling_is_deterministic_per_id_and_near_the_rate() -> None:
    ids = [f"{index:032x}" for index in range(20_000)]
    chosen = [i for i in ids if sampled(i, 0.25)]
    assert 0.23 < len(chosen) / len(ids) < 0.27
    assert chosen == [i for i in ids if sampled(i, 0.25)]
    assert all(sampled(i, 1.0) for i in ids[:100])
    assert not any(sampled(i, 0.0) for i in ids[:100])


def test_tabular_inputs_are_written_per_column_with_null_and_booleans() -> None:
    store = FakeStore()
    capture = writer(store)
    capture.set_columns(ColumnLayout(("island", "mass", "male"), frozenset({2}), objects=True))
    features = np.array([["Biscoe", 3750.0, 1.0], [np.nan, np.nan, 0.0]], dtype=object)
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    capture.offer_predictions("t", features, np.array(["Adelie", "Gentoo"], dtype=object), proba)
    capture.start()
    capture.close(1.0)
    records = store.records()
    assert records[0]["inputs"] == {"island": "Biscoe", "mass": 3750.0, "male": True}
    assert records[1]["inputs"] == {"island": None, "mass": None, "male": False}
    assert records[1]["prediction"] == "Gentoo" and records[1]["probabilities"] == [0.2, 0.8]


# -- the service -----------------------------------------------------------------------


class Harness:
    def __init__(self, capture: CaptureWriter | None = None, estimator: Any = None) -> None:
        self.scheduled: list[Callable[[], None]] = []
        settings = ServiceSettings("iris", "3", "canary")
        self.service = InferenceService(settings, self.scheduled.append, list, capture)
        self.service.model_loaded(
            build_predictor(estimator or iris_logistic_regression()), "ab" * 32
        )

    def call(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        answers: list[tuple[int, bytes, tuple[tuple[str, str], ...]]] = []
        self.service.handle(
            "POST", path, headers or {}, body, lambda s, b, h: answers.append((s, b, h)), 0.0
        )
        for callback in list(self.scheduled):
            callback()
        self.scheduled.clear()
        assert len(answers) == 1
        status, payload, reply_headers = answers[0]
        return status, orjson.loads(payload), dict(reply_headers)


INFER = "/v2/models/iris/infer"
FEEDBACK = "/v2/models/iris/feedback"


def test_the_clients_id_is_returned_in_the_body_and_header() -> None:
    status, body, headers = Harness().call(INFER, infer_body(ROWS, id="order-17"))
    assert status == 200
    assert body["id"] == "order-17" and headers[INFERENCE_ID_HEADER] == "order-17"


def test_an_id_is_generated_when_the_client_sends_none() -> None:
    harness = Harness()
    _, first, headers = harness.call(INFER, infer_body(ROWS))
    _, second, _ = harness.call(INFER, infer_body(ROWS))
    assert len(first["id"]) == 32 and int(first["id"], 16) >= 0
    assert headers[INFERENCE_ID_HEADER] == first["id"] != second["id"]


def test_an_id_in_the_request_header_is_used_when_the_body_has_none() -> None:
    _, body, headers = Harness().call(INFER, infer_body(ROWS), {INFERENCE_ID_HEADER: "hdr-1"})
    assert body["id"] == "hdr-1" == headers[INFERENCE_ID_HEADER]


def test_an_id_that_is_not_header_safe_is_percent_encoded_in_the_header_only() -> None:
    _, body, headers = Harness().call(INFER, infer_body(ROWS, id="a\r\nb é"))
    assert body["id"] == "a\r\nb é"
    assert headers[INFERENCE_ID_HEADER] == "a%0D%0Ab%20%C3%A9"


def test_binary_responses_carry_the_id_header_too() -> None:
    body = infer_body(
        ROWS, id="bin", outputs=[{"name": "predict", "parameters": {"binary_data": True}}]
    )
    harness = Harness()
    answers: list[tuple[int, bytes, tuple[tuple[str, str], ...]]] = []
    harness.service.handle("POST", INFER, {}, body, lambda s, b, h: answers.append((s, b, h)), 0.0)
    for callback in harness.scheduled:
        callback()
    headers = dict(answers[0][2])
    assert "inference-header-content-length" in headers and headers[INFERENCE_ID_HEADER] == "bin"


def test_batched_requests_each_keep_their_own_id() -> None:
    harness = Harness()
    answers: list[tuple[int, bytes, tuple[tuple[str, str], ...]]] = []
    for index in range(3):
        harness.service.handle(
            "POST", INFER, {}, infer_body(ROWS, id=f"b{index}"),
            lambda s, b, h: answers.append((s, b, h)), 0.0,
        )  # fmt: skip
    for callback in harness.scheduled:
        callback()
    assert [orjson.loads(a[1])["id"] for a in answers] == ["b0", "b1", "b2"]
    assert [dict(a[2])[INFERENCE_ID_HEADER] for a in answers] == ["b0", "b1", "b2"]


def test_predicted_requests_are_captured_with_their_id_and_probabilities() -> None:
    store = FakeStore()
    capture = writer(store)
    harness = Harness(capture)
    outputs = [{"name": "predict"}, {"name": "predict_proba"}]
    _, body, _ = harness.call(INFER, infer_body(ROWS, id="cap-1", outputs=outputs))
    harness.call(INFER, infer_body(ROWS[:1]))
    capture.start()
    capture.close(1.0)
    records = [PredictionRecord.model_validate(r) for r in store.records()]
    assert [(r.id, r.row) for r in records[:2]] == [("cap-1", 0), ("cap-1", 1)]
    assert len(records[2].id) == 32  # generated
    assert records[0].inputs == {"f0": 5.1, "f1": 3.5, "f2": 1.4, "f3": 0.2}
    assert records[0].prediction == body["outputs"][0]["data"][0]
    assert records[0].probabilities is not None and len(records[0].probabilities) == 3
    assert records[2].probabilities is None


def test_feedback_is_validated_and_written_as_feedback_records() -> None:
    store = FakeStore()
    capture = writer(store)
    harness = Harness(capture)
    document = {"labels": [{"id": "a", "label": 1}, {"id": "b", "row": 2, "label": "setosa"}]}
    assert harness.call(FEEDBACK, orjson.dumps(document))[:2] == (200, {"accepted": 2})
    single = {"id": "c", "label": 0}
    assert harness.call("/v2/models/iris/versions/3/feedback", orjson.dumps(single))[:2] == (
        200,
        {"accepted": 1},
    )
    capture.start()
    capture.close(1.0)
    records = [FeedbackRecord.model_validate(r) for r in store.records("feedback")]
    assert [(r.id, r.row, r.label) for r in records] == [
        ("a", 0, 1),
        ("b", 2, "setosa"),
        ("c", 0, 0),
    ]
    assert store.records("predictions") == []
    text = harness.service.metrics.snapshot()
    assert text.feedback_records == 3


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"{", "malformed JSON"),
        (b"[1]", "must be a JSON object"),
        (b"{}", "'labels'"),
        (b'{"labels": []}', "non-empty list"),
        (b'{"labels": [3]}', "labels[0] must be an object"),
        (b'{"labels": [{"label": 1}]}', "labels[0].id"),
        (b'{"labels": [{"id": "a", "label": 1}, {"id": "", "label": 1}]}', "labels[1].id"),
        (b'{"labels": [{"id": "a", "row": -1, "label": 1}]}', "labels[0].row"),
        (b'{"labels": [{"id": "a", "row": 1.5, "label": 1}]}', "labels[0].row"),
        (b'{"labels": [{"id": "a"}]}', "labels[0].label is required"),
        (b'{"labels": [{"id": "a", "label": [1]}]}', "labels[0].label must be"),
        (b'{"id": 5, "label": 1}', "feedback.id"),
    ],
)
def test_bad_feedback_is_refused_naming_the_field(document: bytes, message: str) -> None:
    harness = Harness(writer(FakeStore()))
    status, body, _ = harness.call(FEEDBACK, document)
    assert status == 400 and message in body["error"], body


def test_feedback_without_capture_is_refused_saying_capture_is_off() -> None:
    status, body, _ = Harness().call(FEEDBACK, b'{"id": "a", "label": 1}')
    assert status == 409 and "capture is off" in body["error"]


def test_feedback_for_another_model_is_404() -> None:
    status, _, _ = Harness(writer(FakeStore())).call("/v2/models/other/feedback", b"{}")
    assert status == 404


def test_feedback_that_does_not_fit_the_queue_is_refused_with_503_not_dropped() -> None:
    capture = writer(FakeStore(), queue_records=1)
    status, _, headers = Harness(capture).call(
        FEEDBACK, b'{"labels": [{"id": "a", "label": 1}, {"id": "b", "label": 0}]}'
    )
    assert status == 503 and headers["retry-after"] == "1"
    assert capture.counts() == ({"written": 0, "dropped": 0, "failed": 0}, 0)


def test_a_tabular_fast_path_model_returns_ids_counts_drift_and_captures_columns() -> None:
    from tests.support.tabular import column_inputs, penguins, random_penguin_rows

    from kiln.contract.monitoring import Baseline, Distribution, FeatureProfile
    from kiln.server.artifact import deserialise

    trained = penguins("sklearn.ensemble.RandomForestClassifier", '{"n_estimators": 5}')
    predictor = build_predictor(deserialise(trained.artifact, "skops", allow_pickle=False))
    assert predictor.fast_path
    store = FakeStore()
    capture = writer(store)
    harness = Harness(capture)
    baseline = Baseline(
        rows=300,
        features=[
            FeatureProfile(
                name="island",
                kind="categorical",
                distribution=Distribution(labels=["Biscoe", "Dream"], shares=[0.5, 0.5]),
            ),
            FeatureProfile(
                name="body_mass_g",
                kind="numeric",
                distribution=Distribution(edges=[4000.0], shares=[0.5, 0.5]),
            ),
        ],
        predictions=Distribution(labels=["Adelie", "Chinstrap", "Gentoo"], shares=[0.4, 0.2, 0.4]),
    )
    harness.service.model_loaded(predictor, trained.sha256, baseline)
    rows = random_penguin_rows(20, seed=5)
    body = orjson.dumps({"id": "peng", "inputs": column_inputs(rows)})
    status, answer, headers = harness.call(INFER, body)
    assert status == 200 and answer["id"] == "peng" == headers[INFERENCE_ID_HEADER]
    _, generated, headers = harness.call(INFER, orjson.dumps({"inputs": column_inputs(rows[:1])}))
    assert len(generated["id"]) == 32 and headers[INFERENCE_ID_HEADER] == generated["id"]
    snapshot = harness.service.metrics.snapshot()
    assert sum(snapshot.feature_bins[0]) == 21 and sum(snapshot.prediction_bins) == 21
    islands = rows["island"].tolist()
    missing = sum(1 for v in islands[:20] if v is None) + (islands[0] is None)
    assert snapshot.feature_bins[0][3] == missing  # island: Biscoe, Dream, OTHER, MISSING
    capture.start()
    capture.close(1.0)
    records = store.records()
    assert len(records) == 21 and records[0]["id"] == "peng"
    first = rows.iloc[0]
    assert records[0]["inputs"]["island"] == first["island"]
    assert set(records[0]["inputs"]) == set(rows.columns)


def test_feedback_takes_only_post() -> None:
    harness = Harness(writer(FakeStore()))
    answers: list[tuple[int, bytes, tuple[tuple[str, str], ...]]] = []
    harness.service.handle("GET", FEEDBACK, {}, b"", lambda s, b, h: answers.append((s, b, h)), 0.0)
    assert answers[0][0] == 405 and dict(answers[0][2])["allow"] == "POST"


def test_capture_counters_are_exported_at_zero_from_the_start() -> None:
    from kiln.server.telemetry import render

    text = render(Harness(writer(FakeStore())).service).decode()
    for result in ("written", "dropped", "failed"):
        assert f'kiln_capture_records_total{{model="iris",result="{result}"' in text
    assert "kiln_capture_queue_depth{" in text and "kiln_feedback_records_total{" in text
    assert "kiln_capture" not in render(Harness().service).decode()
