"""The operator's own Prometheus metrics, served on `/metrics` (port 8080 by default).

kiln_training_runs_total{result, reason}      finished runs by result
kiln_training_run_duration_seconds            run start -> finish (histogram)
kiln_training_attempts_total                  pods created for training attempts
kiln_training_queue_depth                     keys waiting for a reconcile worker
kiln_training_active_runs                     runs Pending or Running
kiln_model_versions_registered_total{approval}  ModelVersions created, by first decision
kiln_reconcile_duration_seconds{kind}         one reconcile pass (histogram)
kiln_reconcile_errors_total{kind}             reconcile passes that raised

ModelDeployment rollouts: `kiln.telemetry.rollouts`; monitoring (kiln_feature_drift,
kiln_live_quality, kiln_training_quality, kiln_monitoring_labelled_predictions):
`kiln.telemetry.monitoring`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

RUNS = Counter(
    "kiln_training_runs",
    "Finished TrainingJob runs, by result (Succeeded or Failed) and reason.",
    ["result", "reason"],
)
RUN_DURATION = Histogram(
    "kiln_training_run_duration_seconds",
    "Time from the start of a run to its end, across all its attempts.",
    ["result"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
)
ATTEMPTS = Counter("kiln_training_attempts", "Training pods created (one per attempt).")
QUEUE_DEPTH = Gauge(
    "kiln_training_queue_depth", "TrainingJobs waiting for a reconcile worker right now."
)
ACTIVE_RUNS = Gauge("kiln_training_active_runs", "Runs that are Pending or Running.")
REGISTERED = Counter(
    "kiln_model_versions_registered",
    "ModelVersions created, by the registration policy's decision.",
    ["approval"],
)
RECONCILE_DURATION = Histogram(
    "kiln_reconcile_duration_seconds",
    "Duration of one reconcile pass.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter(
    "kiln_reconcile_errors", "Reconcile passes that raised (retried with backoff).", ["kind"]
)


def zero_known_series(
    kinds: Iterable[str], failure_reasons: Iterable[str], approvals: Iterable[str]
) -> None:
    """Create every known label combination at 0, so "no failures yet" is a 0 on the
    dashboards and in `rate()`/`increase()`, not an absent series that looks like a scrape
    that never happened. Only bounded, known sets: never a label taken from user input."""
    for kind in kinds:
        RECONCILE_ERRORS.labels(kind)
        RECONCILE_DURATION.labels(kind)
    RUNS.labels("Succeeded", "Succeeded")
    for reason in failure_reasons:
        RUNS.labels("Failed", reason)
    for result in ("Succeeded", "Failed"):
        RUN_DURATION.labels(result)
    for approval in approvals:
        REGISTERED.labels(approval)


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve `/metrics` on all interfaces from a background thread."""
    start_http_server(port, registry=registry)


__all__ = [
    "ACTIVE_RUNS",
    "ATTEMPTS",
    "QUEUE_DEPTH",
    "RECONCILE_DURATION",
    "RECONCILE_ERRORS",
    "REGISTERED",
    "RUNS",
    "RUN_DURATION",
    "serve",
    "zero_known_series",
]
