"""ModelDeployment monitoring: drift against the training baseline, capture, live quality."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from kiln.api.cel import rule, rules
from kiln.api.common import MAX_MESSAGE_LENGTH, MAX_SHORT_TEXT, KilnModel

MAX_REPORTED_FEATURES = 64
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?$"


class DriftSpec(KilnModel):
    """Input drift of the stable track against the served version's training baseline."""

    enabled: bool = Field(default=True, description="Measure input drift.")
    psi_threshold: float = Field(
        default=0.2,
        gt=0,
        le=10,
        description="A feature drifts when its population stability index over the window "
        "exceeds this (0.1 slight, 0.2 significant by the usual rule of thumb).",
    )
    max_drifting_share: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Drifting=True once more than this share of the monitored features "
        "drift (0: any one feature).",
    )
    min_samples: int = Field(
        default=100,
        ge=1,
        description="Values a feature needs in the window before it is judged; fewer is "
        "'not enough data', never 'no drift'.",
    )


class QualitySpec(KilnModel):
    """Live quality from ground-truth labels joined to captured predictions."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "!(has(self.maxDrop) && has(self.min))",
                "spec.monitoring.quality: set maxDrop (relative to the version's test "
                "metric) or min (absolute), not both",
            ),
        )
    )

    enabled: bool = Field(default=True, description="Measure live quality (needs capture).")
    metric: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="The metric compared (accuracy, f1_macro, rmse, mae, r2…); defaults to "
        "the ModelVersion's headline metric.",
    )
    max_drop: float | None = Field(
        default=None,
        ge=0,
        description="Largest tolerated worsening of the live value against the version's "
        "own test metric, in the metric's units (default 0.05 when min is not set).",
    )
    min: float | None = Field(
        default=None,
        description="Absolute bound instead: the live value may not be worse than this.",
    )
    min_labelled: int = Field(
        default=50, ge=1, description="Labelled predictions needed in the window to judge."
    )
    max_label_delay_seconds: int = Field(
        default=3600,
        ge=0,
        le=7 * 86400,
        description="Labels arrive after their predictions: the labels received in the "
        "window are matched with predictions made up to this long before the window.",
    )


class CaptureSpec(KilnModel):
    """Request/response capture to S3 (opt-in), the input of the ground-truth join."""

    enabled: bool = Field(default=True, description="Capture predictions.")
    destination: str = Field(
        max_length=1024,
        pattern=S3_URI_PATTERN,
        description="s3://bucket/prefix the records are written under "
        "(<prefix>/<namespace>/<deployment>/predictions|feedback/YYYY/MM/DD/HH/…jsonl).",
    )
    sample_rate: float = Field(
        default=1.0, gt=0, le=1, description="Share of requests captured (0 < rate <= 1)."
    )
    max_records_per_object: int = Field(
        default=1000, ge=1, le=100000, description="Records per written object."
    )
    flush_seconds: int = Field(
        default=10, ge=1, le=3600, description="Longest a record waits before it is written."
    )
    queue_records: int = Field(
        default=10000,
        ge=1,
        le=1000000,
        description="Records a server pod holds while the store is slow or down; beyond "
        "that they are dropped and counted (a request is never blocked or failed).",
    )


class MonitoringSpec(KilnModel):
    """What to watch once a version serves."""

    window_seconds: int = Field(
        default=300,
        ge=30,
        le=86400,
        description="The window drift and quality are measured over.",
    )
    interval_seconds: int = Field(
        default=60, ge=10, le=86400, description="How often the window is evaluated."
    )
    drift: DriftSpec = Field(default_factory=DriftSpec, description="Input drift.")
    quality: QualitySpec = Field(default_factory=QualitySpec, description="Live quality.")
    capture: CaptureSpec | None = Field(
        default=None, description="Data capture; live quality needs it."
    )


# --- status ----------------------------------------------------------------------------


class FeatureDrift(KilnModel):
    feature: str = Field(max_length=MAX_SHORT_TEXT, description="Input column.")
    psi: float | None = Field(default=None, description="PSI over the window (absent: no data).")
    samples: int = Field(default=0, ge=0, description="Values counted in the window.")
    drifting: bool = Field(default=False, description="psi > psiThreshold with enough samples.")


class DriftStatus(KilnModel):
    version: str | None = Field(default=None, max_length=MAX_SHORT_TEXT, description="Measured.")
    window: str | None = Field(default=None, max_length=32, description="e.g. 300s.")
    samples: int = Field(default=0, ge=0, description="Rows served in the window.")
    drifting_features: list[str] = Field(
        default_factory=list, max_length=MAX_REPORTED_FEATURES, description="Names."
    )
    features: list[FeatureDrift] = Field(
        default_factory=list,
        max_length=MAX_REPORTED_FEATURES,
        description="Every monitored feature, highest PSI first.",
    )


class QualityStatus(KilnModel):
    version: str | None = Field(default=None, max_length=MAX_SHORT_TEXT, description="Measured.")
    metric: str | None = Field(default=None, max_length=MAX_SHORT_TEXT, description="Metric.")
    live: float | None = Field(default=None, description="Live value over the window.")
    training: float | None = Field(default=None, description="The version's test-split value.")
    bound: float | None = Field(default=None, description="Worst passing live value.")
    labelled: int = Field(default=0, ge=0, description="Predictions with a label in the window.")
    captured: int = Field(default=0, ge=0, description="Predictions captured in the window.")
    label_delay_seconds: float | None = Field(
        default=None, description="Median time from prediction to its label."
    )


CaptureState = Literal["Off", "Capturing", "Degraded"]


class CaptureStatus(KilnModel):
    state: CaptureState = Field(default="Off", description="Off, Capturing or Degraded.")
    destination: str | None = Field(default=None, max_length=1024, description="s3://…")
    written: float | None = Field(default=None, description="Records written in the window.")
    dropped: float | None = Field(default=None, description="Records dropped in the window.")


class MonitoringStatus(KilnModel):
    last_evaluated_time: datetime | None = Field(default=None, description="Last evaluation.")
    drift: DriftStatus | None = Field(default=None, description="Input drift.")
    quality: QualityStatus | None = Field(default=None, description="Live quality.")
    capture: CaptureStatus | None = Field(default=None, description="Capture state.")
    message: str | None = Field(
        default=None, max_length=MAX_MESSAGE_LENGTH, description="Summary, or why not measured."
    )


class DriftCheck(KilnModel):
    """Built-in canary check: the canary's predictions against stable's over the same window,
    and the canary's inputs against its own training baseline (PSI). Too few rows on either
    track is Inconclusive, never a pass."""

    enabled: bool = Field(default=False, description="Run this check.")
    max_psi: float = Field(
        default=0.2, gt=0, le=10, description="Highest passing PSI (predictions and inputs)."
    )
    min_rows: int = Field(
        default=100, ge=1, description="Rows each track needs in the window to judge."
    )
    inputs: bool = Field(
        default=True, description="Also compare the canary's inputs with its own baseline."
    )
