"""kiln-serve as a process: fail-closed loading, graceful SIGTERM drain, several workers."""

from __future__ import annotations

import contextlib
import json
import pickle
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from tests.support.serve_process import ServerProcess
from tests.support.serving import infer_body, iris_logistic_regression

pytestmark = pytest.mark.component

INFER = "/v2/models/iris/infer"
ROW = [[6.8, 2.8, 4.8, 1.4]]


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_tampered_artifact_never_becomes_ready(
    start_server: Any, artifact: tuple[Path, str]
) -> None:
    path, digest = artifact
    path.write_bytes(path.read_bytes() + b"\0")
    server: ServerProcess = start_server()
    server.wait_listening()
    wait_for(lambda: "IntegrityError" in server.logs())
    status, body = server.json("GET", "/v2/health/ready")
    assert status == 503
    assert "IntegrityError" in body["error"]
    assert "does not match the expected " + digest in body["error"]
    assert server.json("GET", "/v2/health/live")[0] == 200
    assert server.json("POST", INFER, infer_body(ROW))[0] == 503
    time.sleep(0.5)
    assert server.process.poll() is None  # stays up, so Kubernetes shows it NotReady
    log_line = next(line for line in server.logs().splitlines() if "IntegrityError" in line)
    assert json.loads(log_line)["level"] == "ERROR"
    assert server.stop() == 0


def test_exit_on_load_failure_exits_nonzero(start_server: Any) -> None:
    server: ServerProcess = start_server("--exit-on-load-failure", sha256="0" * 64)
    assert server.process.wait(timeout=60) == 1
    assert "IntegrityError" in server.logs()


def test_pickle_artifact_is_refused_without_allow_pickle(start_server: Any, tmp_path: Path) -> None:
    import hashlib

    data = pickle.dumps(iris_logistic_regression())
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    server: ServerProcess = start_server(
        "--model-format=pickle", path=path, sha256=hashlib.sha256(data).hexdigest()
    )
    server.wait_listening()
    wait_for(lambda: "UntrustedArtifact" in server.logs())
    status, body = server.json("GET", "/v2/health/ready")
    assert status == 503
    assert "--allow-pickle" in body["error"]


def test_sigterm_turns_readiness_false_then_keeps_serving_during_the_drain_delay(
    start_server: Any,
) -> None:
    server: ServerProcess = start_server("--drain-delay-seconds=2")
    server.wait_ready()
    server.process.send_signal(signal.SIGTERM)
    wait_for(lambda: server.request("GET", "/v2/health/ready")[0] == 503)
    assert server.json("GET", "/v2/health/ready")[1]["error"] == "server is shutting down"
    assert server.json("POST", INFER, infer_body(ROW))[0] == 200  # still serving
    assert server.process.wait(timeout=20) == 0


def test_after_the_delay_it_serves_until_clients_stop_connecting(start_server: Any) -> None:
    """A pod's proxies may learn it is gone later than any fixed delay: while clients
    still connect it answers them; once they stop (probes do not count) it exits."""
    server: ServerProcess = start_server("--drain-delay-seconds=0.5", "--drain-quiet-seconds=1")
    server.wait_ready()
    server.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    codes = []
    while time.monotonic() - signalled < 3.0:  # clients keep coming well past the delay
        codes.append(server.json("POST", INFER, infer_body(ROW))[0])
        time.sleep(0.2)
    assert codes and set(codes) == {200}, codes
    assert server.process.poll() is None
    last_client = time.monotonic()
    while server.process.poll() is None and time.monotonic() - last_client < 10:
        with contextlib.suppress(OSError):  # the kubelet keeps probing: that must not hold it
            server.request("GET", "/v2/health/ready")
        time.sleep(0.2)
    assert server.process.wait(timeout=10) == 0
    assert 0.9 <= time.monotonic() - last_client < 5, time.monotonic() - last_client


def test_sigterm_finishes_in_flight_requests_closes_idle_ones_and_exits_zero(
    start_server: Any,
) -> None:
    server: ServerProcess = start_server()
    server.wait_ready()
    body = infer_body(ROW, id="in-flight")
    head = (f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    in_flight = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    idle.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(4096).startswith(b"HTTP/1.1 200")  # a kept-alive, now idle connection
    in_flight.sendall(head + body[:10])  # the request is half received
    time.sleep(0.2)

    server.process.send_signal(signal.SIGTERM)
    assert idle.recv(4096) == b""  # the idle connection is closed by the server
    wait_for(lambda: _refused(server.port))  # no new connections are accepted
    in_flight.sendall(body[10:])
    answer = b""
    while chunk := in_flight.recv(65536):
        answer += chunk
    in_flight.close()
    idle.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in answer.lower()
    payload = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert payload["id"] == "in-flight"
    assert payload["outputs"][0]["data"] == iris_logistic_regression().predict(ROW).tolist()
    assert server.process.wait(timeout=20) == 0


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_two_workers_share_the_port_and_report_metrics_together(start_server: Any) -> None:
    server: ServerProcess = start_server("--workers=2")
    server.wait_ready()  # the model loads before the workers start: all of them are ready
    expected = iris_logistic_regression().predict(ROW).tolist()
    for _ in range(40):  # a new connection each: the kernel spreads them over the workers
        status, body = server.json("POST", INFER, infer_body(ROW))
        assert status == 200
        assert body["outputs"][0]["data"] == expected
    # Workers publish their totals every second, so within a few seconds whichever worker
    # answers a scrape reports the pod's total (10 scrapes in a row, over new connections).
    wait_for(lambda: all(_scraped_ok_count(server) == 40 for _ in range(10)), timeout=20)
    assert server.stop() == 0


def _scraped_ok_count(server: ServerProcess) -> int:
    status, text, _ = server.request("GET", "/metrics")
    assert status == 200
    match = re.search(rb'kiln_inference_requests_total\{code="200",[^}]*\} (\d+)', text)
    return int(match.group(1)) if match else 0


def test_two_workers_with_a_tampered_artifact_stay_not_ready_and_stop_cleanly(
    start_server: Any, artifact: tuple[Path, str]
) -> None:
    path, _ = artifact
    path.write_bytes(path.read_bytes()[:-1])
    server: ServerProcess = start_server("--workers=2")
    server.wait_listening()
    wait_for(lambda: "IntegrityError" in server.logs())
    status, body = server.json("GET", "/v2/health/ready")
    assert status == 503
    assert body["error"].startswith("IntegrityError")
    assert server.stop() == 0
