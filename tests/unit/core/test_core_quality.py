from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from kiln.contract.monitoring import FeedbackRecord, PredictionRecord
from kiln.core import quality as ql
from kiln.trainer.metrics import Predictions, compute_metrics

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def prediction(i: str, value: object, *, row: int = 0, at: int = 0, version: str = "m-v1",
               track: str = "stable") -> PredictionRecord:  # fmt: skip
    return PredictionRecord(
        id=i, row=row, time=T0 + timedelta(seconds=at), model="m", version=version,
        track=track, inputs={}, prediction=value,
    )  # fmt: skip


def label(i: str, value: object, *, row: int = 0, at: int = 10) -> FeedbackRecord:
    return FeedbackRecord(id=i, row=row, time=T0 + timedelta(seconds=at), label=value)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_equal_the_trainers(seed: int) -> None:
    rng = random.Random(seed)
    classes = ["a", "b", "c", "d"]
    y_true = [rng.choice(classes[:3]) for _ in range(200)]
    y_pred = [t if rng.random() < 0.7 else rng.choice(classes) for t in y_true]
    ours = ql.classification_metrics(y_true, y_pred)
    theirs = compute_metrics(
        list(ql.LIVE_CLASSIFICATION_METRICS),
        Predictions(y_true=np.array(y_true), y_pred=np.array(y_pred)),
    )
    assert ours == pytest.approx(theirs, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_metrics_equal_the_trainers(seed: int) -> None:
    rng = random.Random(seed)
    y_true = [rng.gauss(10, 3) for _ in range(100)]
    y_pred = [t + rng.gauss(0, 1) for t in y_true]
    ours = ql.regression_metrics(y_true, y_pred)
    theirs = compute_metrics(
        list(ql.LIVE_REGRESSION_METRICS),
        Predictions(y_true=np.array(y_true), y_pred=np.array(y_pred)),
    )
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_r2_with_constant_labels_follows_sklearn() -> None:
    assert ql.regression_metrics([1, 1, 1], [1, 1, 1])["r2"] == 1.0
    assert ql.regression_metrics([1, 1, 1], [1, 2, 1])["r2"] == 0.0
    assert "r2" not in ql.regression_metrics([1], [1])
    assert ql.regression_metrics([], []) == {}
    assert ql.regression_metrics(["x"], [1]) == {}


def test_class_labels_compare_by_text() -> None:
    assert ql.classification_metrics([1, "2", True], [1.0, 2, "true"])["accuracy"] == 1.0
    assert ql.classification_metrics([["a"]], ["a"])["accuracy"] == 1.0
    assert ql.classification_metrics([], []) == {}


def test_join_by_id_and_row_latest_label_wins() -> None:
    predictions = [prediction("r1", "a", row=0), prediction("r1", "b", row=1, at=5),
                   prediction("r2", "c")]  # fmt: skip
    feedback = [
        label("r1", "x", row=0, at=20),
        label("r1", "a", row=0, at=30),  # a correction: wins
        label("r1", "b", row=1, at=15),
        label("gone", "a"),  # no prediction
    ]
    joined = ql.join(predictions, feedback)
    assert sorted((p.prediction, p.label) for p in joined.pairs) == [("a", "a"), ("b", "b")]
    assert joined.captured == 3 and joined.labels == 4
    assert joined.label_delay_seconds == pytest.approx(20.0)  # median of 30 and 10


def test_a_late_label_read_first_still_wins() -> None:
    joined = ql.join([prediction("r", 1)], [label("r", 2, at=50), label("r", 1, at=40)])
    assert [p.label for p in joined.pairs] == [2]


def test_join_filters_version_track_and_window() -> None:
    predictions = [
        prediction("a", 1),
        prediction("b", 1, version="m-v2"),
        prediction("c", 1, track="canary"),
        prediction("d", 1, at=-100),
    ]
    feedback = [label(i, 1) for i in "abcd"]
    joined = ql.join(predictions, feedback, version="m-v1", track="stable", start=T0,
                     end=T0 + timedelta(minutes=5))  # fmt: skip
    assert joined.captured == 1 and len(joined.pairs) == 1
    assert ql.join([], []).label_delay_seconds is None


def test_task_and_metric_choice() -> None:
    assert ql.is_classifier({}, ["a", "b"])
    assert not ql.is_classifier({"rmse": 1.0}, None)
    assert ql.is_classifier({"accuracy": 0.9}, None)
    assert ql.choose_metric("mae", {}, None, False) == "mae"
    assert ql.choose_metric(None, {"accuracy": 0.9}, "f1_macro=0.9", True) == "f1_macro"
    assert ql.choose_metric(None, {"roc_auc": 0.9, "recall_macro": 0.8}, "roc_auc=0.9", True) == (
        "recall_macro"
    )
    assert ql.choose_metric(None, {}, None, True) == "accuracy"
    assert ql.choose_metric(None, {}, None, False) == "rmse"


def test_bound_follows_the_metric_direction() -> None:
    assert ql.bound("accuracy", 0.9, None, None) == pytest.approx(0.85)
    assert ql.bound("accuracy", 0.9, 0.1, None) == pytest.approx(0.8)
    assert ql.bound("rmse", 1.0, 0.5, None) == pytest.approx(1.5)
    assert ql.bound("rmse", None, 0.5, 2.0) == 2.0
    assert ql.bound("rmse", None, None, None) is None
    assert ql.worse_than("accuracy", 0.8, 0.85) and not ql.worse_than("accuracy", 0.85, 0.85)
    assert ql.worse_than("mae", 2.0, 1.5) and not ql.worse_than("mae", 1.0, 1.5)
