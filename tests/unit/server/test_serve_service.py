"""Routing, readiness, the batched inference queue and load shedding (no sockets)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from tests.support.serving import MALFORMED_BODIES, infer_body, iris, iris_logistic_regression

from kiln.server.predictor import build_predictor
from kiln.server.service import InferenceService, ServiceSettings

pytestmark = pytest.mark.unit


class Harness:
    """An InferenceService whose loop turns are run by hand, with answers recorded."""

    def __init__(
        self, max_pending: int = 128, loaded: bool = True, max_queue_seconds: float = 10.0
    ) -> None:
        self.scheduled: list[Callable[[], None]] = []
        settings = ServiceSettings(
            "iris", "3", "canary", max_pending=max_pending, max_queue_seconds=max_queue_seconds
        )
        self.service = InferenceService(settings, self.scheduled.append)
        self.estimator = iris_logistic_regression()
        if loaded:
            self.service.model_loaded(build_predictor(self.estimator), "ab" * 32)

    def send(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> list[tuple[int, bytes, tuple[tuple[str, str], ...]]]:
        """Hand one request to the service; answers arrive now or after `turn()`."""
        answers: list[tuple[int, bytes, tuple[tuple[str, str], ...]]] = []
        self.service.handle(
            method,
            path,
            headers or {},
            body,
            lambda s, b, h: answers.append((s, b, h)),
            0.0,
        )
        return answers

    def turn(self) -> None:
        callbacks, self.scheduled[:] = list(self.scheduled), []
        for callback in callbacks:
            callback()

    def call(self, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
        answers = self.send(method, path, body)
        self.turn()
        assert len(answers) == 1
        status, payload, _ = answers[0]
        return status, json.loads(payload) if payload.startswith((b"{", b"[")) else payload


ROWS = [[5.1, 3.5, 1.4, 0.2], [6.8, 2.8, 4.8, 1.4], [7.7, 3.0, 6.1, 2.3]]


def test_liveness_is_true_even_while_loading() -> None:
    harness = Harness(loaded=False)
    assert harness.call("GET", "/v2/health/live") == (200, {"live": True})


def test_readiness_waits_for_the_model() -> None:
    harness = Harness(loaded=False)
    assert harness.call("GET", "/v2/health/ready") == (
        503,
        {"ready": False, "error": "model is loading"},
    )
    harness.service.model_loaded(build_predictor(harness.estimator), "ab" * 32)
    assert harness.call("GET", "/v2/health/ready") == (200, {"ready": True})


def test_a_failed_load_keeps_the_server_not_ready_with_the_reason() -> None:
    harness = Harness(loaded=False)
    harness.service.model_failed("IntegrityError: artifact sha256 123 does not match")
    status, body = harness.call("GET", "/v2/health/ready")
    assert status == 503
    assert "IntegrityError" in body["error"]
    status, body = harness.call("POST", "/v2/models/iris/infer", infer_body(ROWS))
    assert status == 503
    assert "IntegrityError" in body["error"]
    assert harness.call("GET", "/v2/models/iris/ready")[0] == 503


def test_draining_turns_readiness_false_but_keeps_serving() -> None:
    harness = Harness()
    harness.service.start_draining()
    assert harness.call("GET", "/v2/health/ready") == (
        503,
        {"ready": False, "error": "server is shutting down"},
    )
    assert harness.call("POST", "/v2/models/iris/infer", infer_body(ROWS))[0] == 200


def test_server_metadata() -> None:
    status, body = Harness().call("GET", "/v2")
    assert status == 200
    assert body["name"] == "kiln-serve"
    assert "binary_tensor_data" in body["extensions"]


@pytest.mark.parametrize("path", ["/v2/models/iris", "/v2/models/iris/versions/3"])
def test_model_metadata_describes_inputs_and_outputs(path: str) -> None:
    status, body = Harness().call("GET", path)
    assert status == 200
    assert body["name"] == "iris"
    assert body["versions"] == ["3"]
    assert body["platform"] == "scikit-learn"
    assert body["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert body["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert body["parameters"]["track"] == "canary"


@pytest.mark.parametrize("path", ["/v2/models/iris/ready", "/v2/models/iris/versions/3/ready"])
def test_model_ready(path: str) -> None:
    assert Harness().call("GET", path) == (
        200,
        {"name": "iris", "version": "3", "ready": True},
    )


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/models/other", 404),
        ("GET", "/v2/models/iris/versions/2", 404),
        ("GET", "/v2/models/other/ready", 404),
        ("POST", "/v2/models/other/infer", 404),
        ("POST", "/v2/models/iris/versions/9/infer", 404),
        ("GET", "/nothing", 404),
        ("GET", "/v2/models/iris/infer", 405),
        ("POST", "/v2/health/ready", 405),
        ("DELETE", "/v2/models/iris", 405),
    ],
)
def test_unknown_routes_and_wrong_methods(method: str, path: str, status: int) -> None:
    answer_status, body = Harness().call(method, path, infer_body(ROWS))
    assert answer_status == status
    assert body["error"]


@pytest.mark.parametrize("path", ["/v2/models/iris/infer", "/v2/models/iris/versions/3/infer"])
def test_infer_answers_equal_estimator_predict(path: str) -> None:
    harness = Harness()
    status, body = harness.call("POST", path, infer_body(ROWS, id="r1"))
    assert status == 200
    assert body["id"] == "r1"
    assert body["model_name"] == "iris"
    assert body["model_version"] == "3"
    output = body["outputs"][0]
    assert output["name"] == "predict"
    assert output["datatype"] == "INT64"
    assert output["shape"] == [3]
    assert output["data"] == harness.estimator.predict(np.array(ROWS)).tolist()


def test_url_encoded_model_name_is_understood() -> None:
    assert Harness().call("POST", "/v2/models/%69ris/infer", infer_body(ROWS))[0] == 200


def test_requests_queued_in_one_loop_turn_are_answered_each_with_its_own_rows() -> None:
    harness = Harness()
    features, _ = iris()
    generator = np.random.default_rng(3)
    batches = [features[generator.choice(150, size=n)] for n in (1, 5, 2, 40, 1)]
    answers = [
        harness.send("POST", "/v2/models/iris/infer", infer_body(batch, id=str(i)))
        for i, batch in enumerate(batches)
    ]
    assert all(not answer for answer in answers)  # nothing answered before the loop turns
    assert harness.service.pending == 5
    harness.turn()
    for index, (batch, answer) in enumerate(zip(batches, answers, strict=True)):
        status, payload, _ = answer[0]
        body = json.loads(payload)
        assert status == 200
        assert body["id"] == str(index)
        assert body["outputs"][0]["data"] == harness.estimator.predict(batch).tolist()
    assert harness.service.pending == 0


def test_a_full_queue_sheds_load_with_503_and_retry_after() -> None:
    harness = Harness(max_pending=2)
    first = harness.send("POST", "/v2/models/iris/infer", infer_body(ROWS))
    second = harness.send("POST", "/v2/models/iris/infer", infer_body(ROWS))
    third = harness.send("POST", "/v2/models/iris/infer", infer_body(ROWS))
    assert third[0][0] == 503
    assert ("retry-after", "1") in third[0][2]
    assert "overloaded" in json.loads(third[0][1])["error"]
    harness.turn()
    assert first[0][0] == second[0][0] == 200


def test_a_slow_model_sheds_load_once_the_queued_work_exceeds_the_time_budget() -> None:
    harness = Harness(max_queue_seconds=0.05)
    predictor = build_predictor(harness.estimator)
    real_predict = predictor.predict

    def slow_predict(features: np.ndarray) -> Any:
        time.sleep(0.02)  # 20 ms per predict call
        return real_predict(features)

    object.__setattr__(predictor, "predict", slow_predict)
    harness.service.model_loaded(predictor, "ab" * 32)
    for _ in range(3):  # learn what a request costs
        harness.call("POST", "/v2/models/iris/infer", infer_body(ROWS))
    statuses = []
    for _ in range(20):
        answers = harness.send("POST", "/v2/models/iris/infer", infer_body(ROWS))
        statuses.append(answers[0][0] if answers else "queued")
    harness.turn()
    # ~20 ms of work each: two or three fit in the 50 ms budget, the rest are shed.
    assert 2 <= statuses.count("queued") <= 10
    assert statuses.count(503) == 20 - statuses.count("queued")


@pytest.mark.parametrize(("label", "body"), MALFORMED_BODIES, ids=[m[0] for m in MALFORMED_BODIES])
def test_malformed_infer_requests_get_400_not_500(label: str, body: bytes) -> None:
    status, payload = Harness().call("POST", "/v2/models/iris/infer", body)
    assert status == 400
    assert isinstance(payload["error"], str)


def test_predict_proba_can_be_requested() -> None:
    harness = Harness()
    body = infer_body(ROWS, outputs=[{"name": "predict_proba"}, {"name": "predict"}])
    status, answer = harness.call("POST", "/v2/models/iris/infer", body)
    assert status == 200
    proba, predict = answer["outputs"]
    assert proba["shape"] == [3, 3]
    expected = harness.estimator.predict_proba(np.array(ROWS)).ravel()
    np.testing.assert_allclose(proba["data"], expected, rtol=0, atol=0)
    assert predict["data"] == harness.estimator.predict(np.array(ROWS)).tolist()


def test_binary_output_sets_the_inference_header_length() -> None:
    harness = Harness()
    answers = harness.send(
        "POST",
        "/v2/models/iris/infer",
        infer_body(ROWS, parameters={"binary_data_output": True}),
    )
    harness.turn()
    _status, payload, headers = answers[0]
    length = int(dict(headers)["inference-header-content-length"])
    np.testing.assert_array_equal(
        np.frombuffer(payload[length:], "<i8"), harness.estimator.predict(np.array(ROWS))
    )


def test_a_model_error_on_one_request_does_not_fail_its_batch_neighbours() -> None:
    harness = Harness()
    predictor = build_predictor(harness.estimator)
    real_predict = predictor.predict

    def refuse_large_values(features: np.ndarray) -> Any:
        if (features > 100).any():
            raise ValueError("values above 100 are out of the training range")
        return real_predict(features)

    object.__setattr__(predictor, "predict", refuse_large_values)
    harness.service.model_loaded(predictor, "ab" * 32)
    good = harness.send("POST", "/v2/models/iris/infer", infer_body(ROWS))
    bad = harness.send("POST", "/v2/models/iris/infer", infer_body([[500.0, 1, 1, 1]]))
    harness.turn()
    assert good[0][0] == 200
    assert bad[0][0] == 400
    assert "out of the training range" in json.loads(bad[0][1])["error"]


def test_metrics_count_requests_rows_classes_and_features() -> None:
    harness = Harness()
    harness.call("POST", "/v2/models/iris/infer", infer_body(ROWS))
    harness.call("POST", "/v2/models/iris/infer", b"{}")
    status, text = harness.call("GET", "/metrics")
    assert status == 200
    exposition = text.decode()
    labels = 'model="iris",track="canary",version="3"'
    assert f'kiln_inference_requests_total{{code="200",{labels}}} 1.0' in exposition
    assert f'kiln_inference_requests_total{{code="400",{labels}}} 1.0' in exposition
    assert f"kiln_inference_rows_total{{{labels}}} 3.0" in exposition
    assert f"kiln_inference_request_duration_seconds_count{{{labels}}} 2.0" in exposition
    predicted = harness.estimator.predict(np.array(ROWS)).tolist()
    for label in (0, 1, 2):
        count = float(predicted.count(label))
        assert f'kiln_predictions_total{{class="{label}",{labels}}} {count}' in exposition
    total = sum(row[0] for row in ROWS)
    assert f'kiln_feature_value_sum{{feature="f0",{labels}}} {total}' in exposition
    assert f'kiln_feature_values_total{{feature="f3",{labels}}} 3.0' in exposition


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_request_bodies_are_decoded(encoding: str) -> None:
    import gzip
    import zlib

    harness = Harness()
    raw = infer_body(ROWS)
    body = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    answers = harness.send("POST", "/v2/models/iris/infer", body, {"content-encoding": encoding})
    harness.turn()
    status, payload, _ = answers[0]
    assert status == 200
    assert (
        json.loads(payload)["outputs"][0]["data"]
        == harness.estimator.predict(np.array(ROWS)).tolist()
    )


@pytest.mark.parametrize(
    ("encoding", "body", "status"),
    [
        ("br", b"...", 415),
        ("gzip", b"not gzip at all", 400),
        ("gzip", None, 413),  # a small gzip bomb: 9 MiB of spaces
    ],
)
def test_bad_or_oversized_compressed_bodies_are_refused(
    encoding: str, body: bytes | None, status: int
) -> None:
    import gzip

    harness = Harness()
    payload = body if body is not None else gzip.compress(b"{" + b" " * (9 << 20) + b"}")
    answers = harness.send("POST", "/v2/models/iris/infer", payload, {"content-encoding": encoding})
    assert answers[0][0] == status
