"""The monitoring contract shared by the trainer, the model server and the operator.

- `Baseline`: the profile of the training data and of the model's held-out predictions,
  written by the trainer next to the artifact (`baseline.json`), its sha256 recorded in
  the ModelVersion spec, read (and verified) by kiln-serve and the operator.
- The bins: one function (`numeric_bin`, `category_bin`) places a value into a baseline
  bin, so the server counts exactly the bins the trainer measured shares for.
- The series kiln-serve exports for drift, and their bounded label sets.
- The capture records (JSON Lines objects in S3) and where they are written, so the
  operator's join and a later TrainingJob read what the server wrote.
- The environment variables the operator's Deployment builder gives kiln-serve.

Nothing here depends on the trainer, the server or the operator.
"""

from __future__ import annotations

import bisect
import math
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from kiln.api.common import KilnModel

BASELINE_FILE = "baseline.json"
BASELINE_SCHEMA_VERSION = 1

# Profile sizes (trainer) and the server's cardinality caps per pod and track.
NUMERIC_BINS = 10  # quantile bins per numeric feature (fewer when values repeat)
TOP_CATEGORIES = 10  # categories kept by name; the rest share the OTHER bin
MAX_MONITORED_FEATURES = 64  # features counted by kiln-serve, in baseline order
MAX_PREDICTION_BINS = 64  # classes (or value bins) counted for predictions

# Bin labels besides the numeric bin index ("0".."k") and the category name.
MISSING_BIN = "__missing__"
OTHER_BIN = "__other__"

# Series kiln-serve exports (counter names without the `_total` suffix Prometheus adds).
# Labels: model, version, track (as every kiln-serve series) + feature, bin.
FEATURE_BIN_METRIC = "kiln_feature_bin"
# Labels: model, version, track + bin (class label, or value bin index for regressors).
PREDICTION_BIN_METRIC = "kiln_prediction_bin"
# Gauge: features of the baseline beyond MAX_MONITORED_FEATURES, not counted here.
UNMONITORED_FEATURES_METRIC = "kiln_drift_unmonitored_features"
# Counter, label result=written|dropped|failed: capture records by fate.
CAPTURE_RECORDS_METRIC = "kiln_capture_records"
# Gauge: records waiting in the capture queue.
CAPTURE_QUEUE_METRIC = "kiln_capture_queue_depth"
# Counter: feedback labels accepted.
FEEDBACK_RECORDS_METRIC = "kiln_feedback_records"

# Environment the operator gives kiln-serve (absent = feature off).
ENV_BASELINE_URI = "KILN_BASELINE_URI"
ENV_BASELINE_SHA256 = "KILN_BASELINE_SHA256"
ENV_CAPTURE_DESTINATION = "KILN_CAPTURE_DESTINATION"  # s3://bucket/prefix
ENV_CAPTURE_SAMPLE_RATE = "KILN_CAPTURE_SAMPLE_RATE"  # 0..1
ENV_CAPTURE_MAX_RECORDS = "KILN_CAPTURE_MAX_RECORDS"  # records per object
ENV_CAPTURE_FLUSH_SECONDS = "KILN_CAPTURE_FLUSH_SECONDS"  # longest wait before a write
ENV_CAPTURE_QUEUE = "KILN_CAPTURE_QUEUE"  # bounded queue length (records)
ENV_NAMESPACE = "KILN_NAMESPACE"
ENV_DEPLOYMENT = "KILN_DEPLOYMENT"
ENV_POD_NAME = "KILN_POD_NAME"

# Response / request header carrying the inference id besides the OIP body `id`.
INFERENCE_ID_HEADER = "x-kiln-inference-id"

FeatureKind = Literal["numeric", "boolean", "categorical", "datetime"]


class Distribution(KilnModel):
    """Shares of a set of bins, each in [0, 1], summing to 1 (when count > 0).

    Numeric: `edges` are the k-1 inner quantile edges of k bins; bin i holds values in
    [edges[i-1], edges[i]) with the first and last bins open-ended. Categorical / classes:
    `labels` name the bins (OTHER_BIN last when the top list was cut). Missing values are
    not a bin here: they are the feature's `missing_rate`.
    """

    edges: list[float] | None = None
    labels: list[str] | None = None
    shares: list[float] = Field(default_factory=list)
    count: int = Field(default=0, ge=0, description="Values counted (missing excluded).")

    def bin_labels(self) -> list[str]:
        if self.labels is not None:
            return list(self.labels)
        return [str(i) for i in range(len(self.shares))]


class FeatureProfile(KilnModel):
    name: str
    kind: FeatureKind
    missing_rate: float = Field(default=0.0, ge=0, le=1)
    distribution: Distribution


class Baseline(KilnModel):
    """The training profile of one ModelVersion (`baseline.json`)."""

    schema_version: int = BASELINE_SCHEMA_VERSION
    rows: int = Field(ge=0, description="Rows of the training split profiled.")
    features: list[FeatureProfile] = Field(default_factory=list)
    # The model's predictions on the held-out split, and the true labels there.
    predictions: Distribution | None = None
    labels: Distribution | None = None
    task: Literal["classification", "regression"] = "classification"

    def feature(self, name: str) -> FeatureProfile | None:
        return next((f for f in self.features if f.name == name), None)


def numeric_bin(edges: list[float], value: float) -> str | None:
    """The bin label of a number (None for a missing value: NaN / None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(bisect.bisect_right(edges, float(value)))


def category_bin(labels: list[str], value: Any) -> str | None:
    """The bin label of a category value: itself when named, else OTHER_BIN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value)
    return text if text in labels else OTHER_BIN


def category_label(value: Any) -> str:
    """The text a category is binned as: `3`, `3.0` and `"3"` are one category, and a
    boolean is `"True"` / `"False"` (as `kiln.tabular.coerce.category_text` writes them)."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # a numpy scalar, without importing numpy
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def feature_bin(profile: FeatureProfile, value: Any) -> str | None:
    """The baseline bin of one input value of this feature (None: missing, or not binned).

    Numeric: `numeric_bin` on the value. Categorical: `category_bin` on its
    `category_label`. Boolean: a true value (`True`, `1`, `1.0`) is `"True"`, a false one
    `"False"`, so a JSON `true`, a `1` and the coerced `1.0` land in the same bin.
    Datetime features carry no bins (an empty distribution): always None.
    The trainer measures the baseline shares with this function on the training values.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    distribution = profile.distribution
    if profile.kind == "datetime" or not distribution.shares:
        return None
    if profile.kind == "numeric":
        return numeric_bin(distribution.edges or [], value)
    if profile.kind == "boolean" and (isinstance(value, bool) or value in (0, 1)):
        value = bool(value)
    return category_bin(distribution.labels or [], category_label(value))


# --- capture records -------------------------------------------------------------------
#
# One JSON object per line, one line per predicted row. A request's rows share its id and
# are told apart by `row`. The object key:
#   <destination>/<namespace>/<deployment>/<kind>/YYYY/MM/DD/HH/<pod>-<first time>-<seq>.jsonl
# with <kind> predictions or feedback and the hour of the object's first record (UTC), so
# a window is read by listing the hour prefixes it covers.

RecordKind = Literal["predictions", "feedback"]


class PredictionRecord(KilnModel):
    id: str
    row: int = 0
    time: datetime
    model: str
    version: str
    track: str
    inputs: dict[str, Any] = Field(description="Raw input columns as the request sent them.")
    prediction: Any
    # Class probabilities in the order of the ModelVersion's input_schema.classes, if any.
    probabilities: list[float] | None = None


class FeedbackRecord(KilnModel):
    id: str
    row: int = 0
    time: datetime
    label: Any


def hour_prefix(destination: str, namespace: str, deployment: str, kind: RecordKind,
                at: datetime) -> str:  # fmt: skip
    """`<destination>/<namespace>/<deployment>/<kind>/YYYY/MM/DD/HH/` for the hour of `at`."""
    return (
        f"{destination.rstrip('/')}/{namespace}/{deployment}/{kind}/"
        f"{at:%Y}/{at:%m}/{at:%d}/{at:%H}/"
    )


def object_key(destination: str, namespace: str, deployment: str, kind: RecordKind,
               first: datetime, pod: str, sequence: int) -> str:  # fmt: skip
    stamp = first.strftime("%Y%m%dT%H%M%S%fZ")
    prefix = hour_prefix(destination, namespace, deployment, kind, first)
    return f"{prefix}{pod}-{stamp}-{sequence:06d}.jsonl"


def hour_prefixes(destination: str, namespace: str, deployment: str, kind: RecordKind,
                  start: datetime, end: datetime) -> list[str]:  # fmt: skip
    """Every hour prefix a window [start, end] touches, oldest first."""
    prefixes: list[str] = []
    at = start.replace(minute=0, second=0, microsecond=0)
    while at <= end:
        prefixes.append(hour_prefix(destination, namespace, deployment, kind, at))
        at += timedelta(hours=1)
    return prefixes
