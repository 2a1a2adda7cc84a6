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
