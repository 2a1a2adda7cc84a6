"""Server configuration from command-line flags, each defaulting to a `KILN_*` variable.

The operator's Deployment builder sets the environment variables; flags exist for
running by hand. S3 access is configured by the usual AWS_* variables (including
AWS_ENDPOINT_URL), read by `kiln.store`.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from kiln.contract import monitoring as mon
from kiln.server.artifact import SKOPS, SUPPORTED_FORMATS

TRACKS = ("stable", "canary")
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class ServerConfig:
    model_name: str
    model_version: str
    artifact_uri: str
    artifact_sha256: str
    track: str = "stable"
    model_format: str = SKOPS
    allow_pickle: bool = False
    trusted_types: tuple[str, ...] = ()
    feature_names: tuple[str, ...] | None = None
    host: str = "0.0.0.0"
    port: int = 8080
    metrics_port: int | None = None
    workers: int = 1
    max_body_bytes: int = 8 << 20
    max_pending: int = 1024
    max_queue_ms: float = 50.0
    drain_delay_seconds: float = 0.0
    drain_quiet_seconds: float = 0.0
    drain_timeout_seconds: float = 25.0
    exit_on_load_failure: bool = False
    log_level: str = "INFO"
    # Monitoring (kiln.contract.monitoring): the training baseline the drift bins come
    # from, and data capture. Absent = off.
    baseline_uri: str | None = None
    baseline_sha256: str | None = None
    capture: CaptureConfig | None = None


@dataclass(frozen=True)
class CaptureConfig:
    destination: str  # s3://bucket/prefix (file:// for local runs)
    namespace: str
    deployment: str
    pod: str
    sample_rate: float = 1.0
    max_records: int = 1000
    flush_seconds: float = 10.0
    queue_records: int = 10_000


# flag name, env var, help. The env var is the default; the flag wins.
_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("--model-name", "KILN_MODEL_NAME", "model name served under /v2/models/{name}"),
    ("--model-version", "KILN_MODEL_VERSION", "model version string"),
    ("--artifact-uri", "KILN_ARTIFACT_URI", "s3://, file://, https:// URI or path of the model"),
    ("--artifact-sha256", "KILN_ARTIFACT_SHA256", "expected sha256 of the artifact (required)"),
    ("--track", "KILN_TRACK", "stable or canary (a metrics label)"),
    ("--model-format", "KILN_MODEL_FORMAT", "skops (default) or pickle"),
    ("--trusted-types", "KILN_TRUSTED_TYPES", "comma-separated extra skops types to trust"),
    ("--feature-names", "KILN_FEATURE_NAMES", "comma-separated feature names, in model order"),
    ("--host", "KILN_HOST", "address to listen on (default 0.0.0.0)"),
    ("--port", "KILN_PORT", "HTTP port (default 8080)"),
    ("--metrics-port", "KILN_METRICS_PORT", "separate /metrics port (default: same port)"),
    ("--workers", "KILN_WORKERS", "worker processes sharing the port (default 1)"),
    ("--max-body-bytes", "KILN_MAX_BODY_BYTES", "largest accepted request body (default 8 MiB)"),
    ("--max-pending", "KILN_MAX_PENDING", "queued inference requests before 503 (default 1024)"),
    ("--max-queue-ms", "KILN_MAX_QUEUE_MS", "estimated queue work before 503 (default 50)"),
    ("--drain-delay-seconds", "KILN_DRAIN_DELAY_SECONDS", "keep serving after SIGTERM (0)"),
    (
        "--drain-quiet-seconds",
        "KILN_DRAIN_QUIET_SECONDS",
        "after the delay, keep serving until no client connects for this long (0)",
    ),
    ("--drain-timeout-seconds", "KILN_DRAIN_TIMEOUT_SECONDS", "max wait for in-flight (25)"),
    ("--log-level", "KILN_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR"),
    ("--baseline-uri", mon.ENV_BASELINE_URI, "training baseline (baseline.json) for drift bins"),
    ("--baseline-sha256", mon.ENV_BASELINE_SHA256, "expected sha256 of the baseline"),
    ("--capture-destination", mon.ENV_CAPTURE_DESTINATION, "s3://bucket/prefix: capture on"),
    ("--capture-sample-rate", mon.ENV_CAPTURE_SAMPLE_RATE, "share of requests captured (1.0)"),
    ("--capture-max-records", mon.ENV_CAPTURE_MAX_RECORDS, "records per object (1000)"),
    ("--capture-flush-seconds", mon.ENV_CAPTURE_FLUSH_SECONDS, "longest wait before a write (10)"),
    ("--capture-queue", mon.ENV_CAPTURE_QUEUE, "records queued before new ones drop (10000)"),
    ("--namespace", mon.ENV_NAMESPACE, "namespace in capture keys (default: default)"),
    ("--deployment", mon.ENV_DEPLOYMENT, "ModelDeployment in capture keys (default: model)"),
    ("--pod-name", mon.ENV_POD_NAME, "pod name in capture keys (default: hostname)"),
)
_SWITCHES: tuple[tuple[str, str, str], ...] = (
    ("--allow-pickle", "KILN_ALLOW_PICKLE", "allow pickle artifacts (they can run code on load)"),
    ("--exit-on-load-failure", "KILN_EXIT_ON_LOAD_FAILURE", "exit 1 when the model cannot load"),
)
_TRUE = frozenset({"1", "true", "yes", "on"})


class ConfigError(ValueError):
    pass


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> ServerConfig:
    parser = argparse.ArgumentParser(
        prog="kiln-serve",
        description="Serve a scikit-learn model over the Open Inference Protocol v2.",
    )
    for flag, env, text in _OPTIONS:
        parser.add_argument(flag, default=environ.get(env), help=f"{text} [${env}]")
    for flag, env, text in _SWITCHES:
        default = environ.get(env, "").strip().lower() in _TRUE
        parser.add_argument(flag, action="store_true", default=default, help=f"{text} [${env}]")
    args = parser.parse_args(list(argv))
    return _validated(vars(args))


def _validated(raw: dict[str, object]) -> ServerConfig:
    missing = [
        name
        for name in ("model_name", "model_version", "artifact_uri", "artifact_sha256")
        if not raw.get(name)
    ]
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise ConfigError(f"missing required settings: {flags}")
    track = str(raw.get("track") or "stable")
    if track not in TRACKS:
        raise ConfigError(f"--track must be one of {TRACKS}, not {track!r}")
    model_format = str(raw.get("model_format") or SKOPS)
    if model_format not in SUPPORTED_FORMATS:
        raise ConfigError(f"--model-format must be one of {SUPPORTED_FORMATS}")
    metrics_port = raw.get("metrics_port")
    baseline_uri = str(raw.get("baseline_uri") or "") or None
    baseline_sha256 = str(raw.get("baseline_sha256") or "") or None
    if baseline_uri and not baseline_sha256:
        raise ConfigError("--baseline-uri needs --baseline-sha256 (baselines are verified)")
    return ServerConfig(
        model_name=str(raw["model_name"]),
        model_version=str(raw["model_version"]),
        artifact_uri=str(raw["artifact_uri"]),
        artifact_sha256=str(raw["artifact_sha256"]),
        track=track,
        model_format=model_format,
        allow_pickle=bool(raw["allow_pickle"]),
        trusted_types=_csv(raw.get("trusted_types")) or (),
        feature_names=_csv(raw.get("feature_names")),
        host=str(raw.get("host") or "0.0.0.0"),
        port=_number(raw, "port", int, 8080, minimum=0),
        metrics_port=_number(raw, "metrics_port", int, 0, minimum=1) if metrics_port else None,
        workers=_number(raw, "workers", int, 1, minimum=1),
        max_body_bytes=_number(raw, "max_body_bytes", int, 8 << 20, minimum=1024),
        max_pending=_number(raw, "max_pending", int, 1024, minimum=1),
        max_queue_ms=_number(raw, "max_queue_ms", float, 50.0, minimum=0.1),
        drain_delay_seconds=_number(raw, "drain_delay_seconds", float, 0.0, minimum=0),
        drain_quiet_seconds=_number(raw, "drain_quiet_seconds", float, 0.0, minimum=0),
        drain_timeout_seconds=_number(raw, "drain_timeout_seconds", float, 25.0, minimum=0),
        exit_on_load_failure=bool(raw["exit_on_load_failure"]),
        log_level=str(raw.get("log_level") or "INFO").upper(),
        baseline_uri=baseline_uri,
        baseline_sha256=baseline_sha256 if baseline_uri else None,
        capture=_capture(raw),
    )


def _capture(raw: dict[str, object]) -> CaptureConfig | None:
    destination = str(raw.get("capture_destination") or "").strip()
    if not destination:
        return None
    if not destination.startswith(("s3://", "file://")) or destination.endswith("://"):
        raise ConfigError(
            f"--capture-destination must be an s3://bucket/prefix URI, not {destination!r}"
        )
    rate = _number(raw, "capture_sample_rate", float, 1.0, minimum=0.0)
    if rate > 1.0:
        raise ConfigError("--capture-sample-rate must be between 0 and 1")
    return CaptureConfig(
        destination=destination.rstrip("/"),
        namespace=str(raw.get("namespace") or "default"),
        deployment=str(raw.get("deployment") or raw["model_name"]),
        pod=str(raw.get("pod_name") or socket.gethostname()),
        sample_rate=rate,
        max_records=_number(raw, "capture_max_records", int, 1000, minimum=1),
        flush_seconds=_number(raw, "capture_flush_seconds", float, 10.0, minimum=0.01),
        queue_records=_number(raw, "capture_queue", int, 10_000, minimum=1),
    )


def _csv(value: object) -> tuple[str, ...] | None:
    if not value:
        return None
    items = tuple(item.strip() for item in str(value).split(",") if item.strip())
    return items or None


def _number(raw: dict[str, object], name: str, kind: type[N], default: N, *, minimum: float) -> N:
    value = raw.get(name)
    if value is None or value == "":
        return default
    try:
        number = kind(str(value))
    except ValueError:
        raise ConfigError(f"--{name.replace('_', '-')} must be a number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"--{name.replace('_', '-')} must be at least {minimum}")
    return number
