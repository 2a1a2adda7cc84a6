"""Operator configuration, read once from the environment (the operator Deployment sets it)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from kiln.version import KILN_VERSION

# The images built from this version (images/Dockerfile.*), used unless configured.
DEFAULT_TRAINER_IMAGE = f"kiln/trainer:{KILN_VERSION}"
DEFAULT_SERVER_IMAGE = f"kiln/server:{KILN_VERSION}"


@dataclass(frozen=True)
class OperatorSettings:
    # Images the operator puts into the pods it creates, unless a resource names its own.
    trainer_image: str = DEFAULT_TRAINER_IMAGE
    server_image: str = DEFAULT_SERVER_IMAGE
    # Where canary analysis queries metrics.
    prometheus_url: str = "http://prometheus.monitoring.svc:9090"
    # Namespaces to watch; empty means the whole cluster.
    namespaces: tuple[str, ...] = field(default_factory=tuple)
    # Artifact location and S3 endpoint for TrainingJobs that do not set spec.output.
    artifact_uri: str | None = None
    s3_endpoint: str | None = None
    # The operator's own /metrics (0 disables it) and its reconcile concurrency.
    metrics_port: int = 8080
    workers: int = 32
    # Seconds between two reads of a running training pod's log tail, for the trainer's
    # phase in status (`pods/log`; 0: never read, the phases then come from the report).
    trainer_log_interval_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorSettings:
        e = dict(os.environ if env is None else env)
        defaults = cls()
        namespaces = tuple(n for n in e.get("KILN_NAMESPACES", "").split(",") if n.strip())
        return cls(
            trainer_image=e.get("KILN_TRAINER_IMAGE", defaults.trainer_image),
            server_image=e.get("KILN_SERVER_IMAGE", defaults.server_image),
            prometheus_url=e.get("KILN_PROMETHEUS_URL", defaults.prometheus_url),
            namespaces=namespaces,
            artifact_uri=e.get("KILN_ARTIFACT_URI") or None,
            s3_endpoint=e.get("KILN_S3_ENDPOINT") or None,
            metrics_port=int(e.get("KILN_METRICS_PORT", defaults.metrics_port)),
            workers=int(e.get("KILN_WORKERS", defaults.workers)),
            trainer_log_interval_seconds=float(
                e.get("KILN_TRAINER_LOG_INTERVAL_SECONDS", defaults.trainer_log_interval_seconds)
            ),
        )
