"""kiln-serve settings from KILN_* environment variables and flags."""

from __future__ import annotations

import pytest

from kiln.server.config import ConfigError, parse_config

pytestmark = pytest.mark.unit

REQUIRED = {
    "KILN_MODEL_NAME": "iris",
    "KILN_MODEL_VERSION": "4",
    "KILN_ARTIFACT_URI": "s3://models/iris/v4/model.skops",
    "KILN_ARTIFACT_SHA256": "a" * 64,
}


def test_environment_alone_configures_the_server() -> None:
    environ = {
        **REQUIRED,
        "KILN_TRACK": "canary",
        "KILN_PORT": "9000",
        "KILN_METRICS_PORT": "9090",
        "KILN_WORKERS": "2",
        "KILN_FEATURE_NAMES": "a, b ,c",
        "KILN_ALLOW_PICKLE": "true",
    }
    config = parse_config([], environ)
    assert (config.model_name, config.model_version, config.track) == ("iris", "4", "canary")
    assert config.artifact_uri == "s3://models/iris/v4/model.skops"
    assert (config.port, config.metrics_port, config.workers) == (9000, 9090, 2)
    assert config.feature_names == ("a", "b", "c")
    assert config.allow_pickle is True
    assert config.model_format == "skops"


def test_defaults_are_safe() -> None:
    config = parse_config([], REQUIRED)
    assert config.track == "stable"
    assert config.allow_pickle is False
    assert config.exit_on_load_failure is False
    assert config.port == 8080
    assert config.metrics_port is None  # /metrics on the main port
    assert config.workers == 1


def test_flags_override_the_environment() -> None:
    config = parse_config(["--port", "7000", "--track", "stable", "--allow-pickle"], REQUIRED)
    assert config.port == 7000
    assert config.allow_pickle is True


def test_missing_required_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="--artifact-sha256"):
        parse_config([], {k: v for k, v in REQUIRED.items() if k != "KILN_ARTIFACT_SHA256"})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"KILN_TRACK": "blue"}, "--track"),
        ({"KILN_MODEL_FORMAT": "onnx"}, "--model-format"),
        ({"KILN_PORT": "eighty"}, "--port must be a number"),
        ({"KILN_WORKERS": "0"}, "--workers must be at least 1"),
    ],
)
def test_invalid_settings_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config([], {**REQUIRED, **environ})


def test_monitoring_settings_come_from_the_contract_environment() -> None:
    from kiln.contract import monitoring as mon

    environ = {
        **REQUIRED,
        mon.ENV_BASELINE_URI: "s3://models/iris/v4/baseline.json",
        mon.ENV_BASELINE_SHA256: "b" * 64,
        mon.ENV_CAPTURE_DESTINATION: "s3://capture/kiln/",
        mon.ENV_CAPTURE_SAMPLE_RATE: "0.25",
        mon.ENV_CAPTURE_MAX_RECORDS: "500",
        mon.ENV_CAPTURE_FLUSH_SECONDS: "2.5",
        mon.ENV_CAPTURE_QUEUE: "2000",
        mon.ENV_NAMESPACE: "ml",
        mon.ENV_DEPLOYMENT: "iris-md",
        mon.ENV_POD_NAME: "iris-md-stable-7d9-x2",
    }
    config = parse_config([], environ)
    assert (config.baseline_uri, config.baseline_sha256) == (
        "s3://models/iris/v4/baseline.json",
        "b" * 64,
    )
    capture = config.capture
    assert capture is not None
    assert capture.destination == "s3://capture/kiln"
    assert (capture.sample_rate, capture.max_records, capture.flush_seconds) == (0.25, 500, 2.5)
    assert (capture.queue_records, capture.namespace, capture.deployment) == (2000, "ml", "iris-md")
    assert capture.pod == "iris-md-stable-7d9-x2"
    flagged = parse_config(["--capture-sample-rate=1", "--pod-name=p"], environ)
    assert flagged.capture is not None and flagged.capture.sample_rate == 1.0
    assert flagged.capture.pod == "p"


def test_monitoring_is_off_by_default_with_capture_defaults_when_on() -> None:
    import socket

    config = parse_config([], REQUIRED)
    assert config.baseline_uri is None and config.capture is None
    on = parse_config(["--capture-destination=s3://b/p"], REQUIRED)
    assert on.capture is not None
    assert (on.capture.sample_rate, on.capture.max_records, on.capture.flush_seconds) == (
        1.0,
        1000,
        10.0,
    )
    assert on.capture.queue_records == 10_000
    assert (on.capture.namespace, on.capture.deployment) == ("default", "iris")
    assert on.capture.pod == socket.gethostname()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--baseline-uri=s3://m/baseline.json"], "--baseline-sha256"),
        (["--capture-destination=http://x/y"], "--capture-destination"),
        (["--capture-destination=s3://b", "--capture-sample-rate=1.5"], "between 0 and 1"),
        (["--capture-destination=s3://b", "--capture-max-records=0"], "at least 1"),
        (["--capture-destination=s3://b", "--capture-queue=x"], "must be a number"),
    ],
)
def test_invalid_monitoring_settings_are_refused(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(flags, REQUIRED)
