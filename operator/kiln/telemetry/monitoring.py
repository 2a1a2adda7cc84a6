"""Operator metrics of ModelDeployment monitoring (registered on the default registry).

Labels namespace, deployment (the ModelDeployment), version (the stable ModelVersion):
kiln_feature_drift{..., feature}          PSI of an input feature over the window
kiln_live_quality{..., metric}            live metric from labelled predictions
kiln_training_quality{..., metric}        the version's test-split value of the same metric
kiln_monitoring_labelled_predictions{...}  labelled predictions in the window

Cardinality is bounded: only the stable version of each ModelDeployment has series (a new
version's evaluation removes the old version's), at most MAX_MONITORED_FEATURES features
and the live-measurable metrics; a deleted ModelDeployment, or one whose monitoring is
switched off, loses all of its series.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from prometheus_client import Gauge

from kiln.api.monitoring import MonitoringStatus

LABELS = ["namespace", "deployment", "version"]

FEATURE_DRIFT = Gauge(
    "kiln_feature_drift",
    "Population stability index of an input feature over the monitoring window.",
    [*LABELS, "feature"],
)
LIVE_QUALITY = Gauge(
    "kiln_live_quality",
    "Live model quality from ground-truth labels joined to captured predictions.",
    [*LABELS, "metric"],
)
TRAINING_QUALITY = Gauge(
    "kiln_training_quality",
    "The served version's metric on its held-out test split (to draw beside live quality).",
    [*LABELS, "metric"],
)
LABELLED = Gauge(
    "kiln_monitoring_labelled_predictions",
    "Predictions with a ground-truth label in the monitoring window.",
    LABELS,
)
GAUGES = (FEATURE_DRIFT, LIVE_QUALITY, TRAINING_QUALITY, LABELLED)


def record(
    namespace: str,
    deployment: str,
    version: str,
    status: MonitoringStatus,
    live: Mapping[str, float],
    training: Mapping[str, float],
) -> None:
    """The series of one evaluation; every other series of this ModelDeployment goes (an
    older version's, a feature no longer measured), without a gap for those kept."""
    labels = (namespace, deployment, version)
    wanted: dict[Gauge, dict[tuple[str, ...], float]] = {g: {} for g in GAUGES}
    if status.drift is not None:
        for feature in status.drift.features:
            if feature.psi is not None:
                wanted[FEATURE_DRIFT][(*labels, feature.feature)] = feature.psi
    if status.quality is not None:
        for metric, value in live.items():
            wanted[LIVE_QUALITY][(*labels, metric)] = value
            if metric in training:
                wanted[TRAINING_QUALITY][(*labels, metric)] = training[metric]
        wanted[LABELLED][labels] = status.quality.labelled
    for gauge, series in wanted.items():
        for key in _keys(gauge, namespace, deployment):
            if key not in series:
                with contextlib.suppress(KeyError):
                    gauge.remove(*key)
        for key, value in series.items():
            gauge.labels(*key).set(value)


def _keys(gauge: Gauge, namespace: str, deployment: str) -> list[tuple[str, ...]]:
    return [tuple(k) for k in list(gauge._metrics) if tuple(k[:2]) == (namespace, deployment)]


def forget(namespace: str, deployment: str) -> None:
    """Drop every monitoring series of a ModelDeployment (gone, or monitoring off)."""
    for gauge in GAUGES:
        for key in _keys(gauge, namespace, deployment):
            with contextlib.suppress(KeyError):
                gauge.remove(*key)
