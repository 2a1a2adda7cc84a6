import pytest

from kiln.devcluster.nodeagent.probes import (
    ProbeSettings,
    http_ok,
    http_url,
    initial_state,
    probe_action,
    record,
    resolve_port,
)

pytestmark = pytest.mark.unit


def test_defaults_match_kubernetes() -> None:
    settings = ProbeSettings.from_spec({})
    assert (settings.initial_delay, settings.period, settings.timeout) == (0, 10, 1)
    assert (settings.success_threshold, settings.failure_threshold) == (1, 3)


def test_initial_results() -> None:
    assert initial_state("readiness").result is False
    assert initial_state("liveness").result is True
    assert initial_state("startup").result is None


def test_failure_threshold_needs_consecutive_failures() -> None:
    settings = ProbeSettings(failure_threshold=3)
    state = initial_state("liveness")
    for ok in (False, False, True, False, False):
        state = record(state, settings, ok)
    assert state.result is True
    state = record(state, settings, False)
    assert state.result is False


def test_success_threshold() -> None:
    settings = ProbeSettings(success_threshold=2)
    state = record(initial_state("readiness"), settings, True)
    assert state.result is False
    assert record(state, settings, True).result is True


def test_named_ports_and_urls() -> None:
    container = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port("http", container) == 8080
    assert resolve_port(9000, container) == 9000
    with pytest.raises(ValueError):
        resolve_port("grpc", container)
    probe = {"httpGet": {"path": "v2/health/ready", "port": "http"}}
    assert http_url(probe, container, "10.244.0.9") == "http://10.244.0.9:8080/v2/health/ready"
    assert probe_action(probe) == "httpGet"


def test_http_success_codes() -> None:
    assert http_ok(200) and http_ok(302)
    assert not http_ok(404) and not http_ok(500)
