"""kiln-serve over real HTTP: predictions, bad input, HTTP edge cases, a third-party client."""

from __future__ import annotations

import http.client
import json
import random
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.support.ports import free_port
from tests.support.serve_process import ServerProcess
from tests.support.serving import (
    IRIS_FEATURES,
    MALFORMED_BODIES,
    infer_body,
    iris,
    iris_logistic_regression,
)

pytestmark = pytest.mark.component

INFER = "/v2/models/iris/infer"


def test_predictions_equal_estimator_predict(shared_server: ServerProcess) -> None:
    features, _ = iris()
    rows = features[np.random.default_rng(1).choice(150, size=100)]
    status, body = shared_server.json(
        "POST", INFER, infer_body(rows, datatype="FP64", id="batch-1")
    )
    assert status == 200
    assert body["id"] == "batch-1"
    assert body["outputs"][0]["shape"] == [100]
    assert body["outputs"][0]["data"] == iris_logistic_regression().predict(rows).tolist()


def test_versioned_infer_path_and_metadata(shared_server: ServerProcess) -> None:
    assert (
        shared_server.json(
            "POST", "/v2/models/iris/versions/7/infer", infer_body([[5.1, 3.5, 1.4, 0.2]])
        )[0]
        == 200
    )
    status, metadata = shared_server.json("GET", "/v2/models/iris/versions/7")
    assert status == 200
    assert metadata["inputs"][0]["shape"] == [-1, 4]
    assert (
        shared_server.json("POST", "/v2/models/iris/versions/6/infer", infer_body([[1, 2, 3, 4]]))[
            0
        ]
        == 404
    )


@pytest.mark.parametrize(("label", "body"), MALFORMED_BODIES, ids=[m[0] for m in MALFORMED_BODIES])
def test_malformed_requests_get_400_over_http(
    shared_server: ServerProcess, label: str, body: bytes
) -> None:
    status, payload, headers = shared_server.request("POST", INFER, body)
    assert status == 400, payload
    assert headers["content-type"] == "application/json"
    assert json.loads(payload)["error"]


def test_fuzzed_bodies_never_get_a_500(shared_server: ServerProcess) -> None:
    generator = random.Random(7)
    valid = infer_body([[5.1, 3.5, 1.4, 0.2], [6.0, 2.2, 5.0, 1.5]], id="f")
    statuses: set[int] = set()
    for _ in range(300):
        body = bytearray(valid)
        for _ in range(generator.randint(1, 3)):
            position = generator.randrange(len(body))
            body[position] = generator.randrange(256)
        status, _, _ = shared_server.request("POST", INFER, bytes(body))
        statuses.add(status)
    assert statuses <= {200, 400}, statuses
    assert 400 in statuses
    assert shared_server.request("GET", "/v2/health/ready")[0] == 200  # still healthy


def test_too_large_body_gets_413_and_the_answer_is_readable(shared_server: ServerProcess) -> None:
    body = b'{"inputs": [' + b" " * 200_000 + b"]}"
    status, payload, _ = shared_server.request("POST", INFER, body)
    assert status == 413
    assert "larger than 65536" in json.loads(payload)["error"]


def test_expect_continue_with_a_too_large_length_is_refused_before_the_body(
    shared_server: ServerProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_garbage_instead_of_http_gets_400(shared_server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ")


def test_pipelined_requests_are_answered_in_order(shared_server: ServerProcess) -> None:
    first = infer_body([[5.1, 3.5, 1.4, 0.2]], id="first")
    second = infer_body([[7.7, 3.0, 6.1, 2.3]], id="second")

    def post(body: bytes) -> bytes:
        head = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    health = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    close = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=5) as sock:
        sock.sendall(post(first) + health + post(second) + close)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    responses = received.split(b"HTTP/1.1 ")[1:]
    assert len(responses) == 4
    assert b'"id":"first"' in responses[0]
    assert b'{"live":true}' in responses[1]
    assert b'"id":"second"' in responses[2]
    assert b'"data":[2]' in responses[2]
    assert b'{"ready":true}' in responses[3]


def test_metrics_endpoint_reports_the_traffic(server: ServerProcess) -> None:
    for _ in range(3):
        server.request("POST", INFER, infer_body([[5.1, 3.5, 1.4, 0.2], [6.0, 2.2, 5.0, 1.5]]))
    server.request("POST", INFER, b"{")
    status, text, headers = server.request("GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    exposition = text.decode()
    labels = 'model="iris",track="canary",version="7"'
    assert f'kiln_inference_requests_total{{code="200",{labels}}} 3.0' in exposition
    assert f'kiln_inference_requests_total{{code="400",{labels}}} 1.0' in exposition
    assert f"kiln_inference_rows_total{{{labels}}} 6.0" in exposition
    assert f"kiln_model_ready{{{labels}}} 1.0" in exposition


def test_separate_metrics_port(start_server: Any) -> None:
    metrics_port = free_port()
    server: ServerProcess = start_server(f"--metrics-port={metrics_port}")
    server.wait_ready()
    assert server.request("GET", "/metrics")[0] == 404  # not on the inference port
    connection = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    text = response.read()
    connection.close()
    assert response.status == 200
    assert b'kiln_model_ready{model="iris",track="canary",version="7"} 1.0' in text


def test_tritonclient_gets_correct_predictions(shared_server: ServerProcess) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=f"127.0.0.1:{shared_server.port}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "7")
    metadata = client.get_model_metadata("iris")
    assert metadata["outputs"][0]["name"] == "predict"

    features, _ = iris()
    rows = features[::7].astype(np.float32)
    expected = iris_logistic_regression().predict(rows.astype(np.float64))
    for binary in (True, False):
        tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        outputs = [
            triton.InferRequestedOutput("predict", binary_data=binary),
            triton.InferRequestedOutput("predict_proba", binary_data=binary),
        ]
        result = client.infer("iris", [tensor], outputs=outputs, request_id="t1")
        np.testing.assert_array_equal(result.as_numpy("predict"), expected)
        probabilities = result.as_numpy("predict_proba")
        assert probabilities.shape == (len(rows), 3)
        assert result.get_response()["id"] == "t1"
    # Default request shape of the client: binary input, no outputs named -> binary outputs.
    tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    np.testing.assert_array_equal(client.infer("iris", [tensor]).as_numpy("predict"), expected)
    for algorithm in ("gzip", "deflate"):
        result = client.infer("iris", [tensor], request_compression_algorithm=algorithm)
        np.testing.assert_array_equal(result.as_numpy("predict"), expected)
    client.close()


def test_tritonclient_sees_a_clear_error_for_a_wrong_shape(shared_server: ServerProcess) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url=f"127.0.0.1:{shared_server.port}")
    tensor = triton.InferInput("input-0", [2, 3], "FP64")
    tensor.set_data_from_numpy(np.zeros((2, 3)), binary_data=False)
    with pytest.raises(InferenceServerException, match=r"expected shape \[N, 4\]"):
        client.infer("iris", [tensor])
    client.close()


def test_serves_a_trainer_artifact_with_named_features_and_string_labels(
    start_server: Any, tmp_path: Path
) -> None:
    """The trainer's canonical skops file, fitted on a DataFrame with string labels."""
    import hashlib

    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from kiln.trainer.artifact import dump_model

    features, target = iris()
    frame = pd.DataFrame(features, columns=list(IRIS_FEATURES))
    labels = np.array(["setosa", "versicolor", "virginica"], dtype=object)[target]
    estimator = LogisticRegression(max_iter=1000).fit(frame, labels)
    data = dump_model(estimator)
    path = tmp_path / "trained.skops"
    path.write_bytes(data)
    server: ServerProcess = start_server(path=path, sha256=hashlib.sha256(data).hexdigest())
    server.wait_ready()

    rows = features[::10]
    inputs = [
        {"name": name, "shape": [len(rows)], "datatype": "FP64", "data": rows[:, i].tolist()}
        for i, name in enumerate(IRIS_FEATURES)
    ]
    status, body = server.json("POST", INFER, json.dumps({"inputs": inputs}).encode())
    assert status == 200
    output = body["outputs"][0]
    assert output["datatype"] == "BYTES"
    expected = estimator.predict(pd.DataFrame(rows, columns=list(IRIS_FEATURES)))
    assert output["data"] == expected.tolist()
    status, metadata = server.json("GET", "/v2/models/iris")
    assert metadata["parameters"]["feature_names"] == list(IRIS_FEATURES)
    assert metadata["parameters"]["classes"] == ["setosa", "versicolor", "virginica"]
    status, text, _ = server.request("GET", "/metrics")
    assert b'kiln_predictions_total{class="setosa"' in text
    assert b'kiln_feature_value_sum{feature="petal_width"' in text
