import math

import numpy as np
import pytest

from kiln.contract.train_spec import CLASSIFICATION_METRICS, REGRESSION_METRICS
from kiln.trainer.metrics import Predictions, compute_metrics, fairness_gap, primary_metric

pytestmark = pytest.mark.unit


def _binary() -> Predictions:
    return Predictions(
        y_true=np.array(["no", "no", "yes", "yes"]),
        y_pred=np.array(["no", "yes", "yes", "yes"]),
        proba=np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]]),
        classes=["no", "yes"],
    )


def test_binary_classification_metrics_match_hand_computed_values() -> None:
    metrics = compute_metrics(CLASSIFICATION_METRICS, _binary())
    assert metrics["accuracy"] == 0.75
    # no: P=1, R=0.5, F1=2/3; yes: P=2/3, R=1, F1=0.8
    assert metrics["precision_macro"] == round((1 + 2 / 3) / 2, 6)
    assert metrics["recall_macro"] == 0.75
    assert metrics["f1_macro"] == round((2 / 3 + 0.8) / 2, 6)
    assert metrics["roc_auc"] == 1.0  # every "yes" scores above every "no"
    expected_log_loss = -(math.log(0.9) + math.log(0.4) + math.log(0.8) + math.log(0.7)) / 4
    assert metrics["log_loss"] == round(expected_log_loss, 6)


def test_roc_auc_falls_back_to_the_decision_function() -> None:
    predictions = Predictions(
        y_true=np.array([0, 0, 1, 1]),
        y_pred=np.array([0, 1, 1, 1]),
        decision=np.array([-2.0, 0.5, 1.0, 0.7]),
        classes=[0, 1],
    )
    metrics = compute_metrics(["roc_auc", "log_loss"], predictions)
    assert metrics == {"roc_auc": 1.0}  # no probabilities: log_loss is undefined, not invented


def test_roc_auc_is_omitted_when_the_test_set_has_one_class() -> None:
    predictions = Predictions(
        y_true=np.array(["a", "a"]),
        y_pred=np.array(["a", "b"]),
        proba=np.array([[0.6, 0.4], [0.3, 0.7]]),
        classes=["a", "b"],
    )
    assert "roc_auc" not in compute_metrics(["roc_auc", "accuracy"], predictions)


def test_multiclass_roc_auc_uses_one_vs_rest_macro() -> None:
    predictions = Predictions(
        y_true=np.array([0, 1, 2]),
        y_pred=np.array([0, 1, 2]),
        proba=np.eye(3),
        classes=[0, 1, 2],
    )
    assert compute_metrics(["roc_auc"], predictions) == {"roc_auc": 1.0}


def test_regression_metrics() -> None:
    predictions = Predictions(y_true=np.array([1.0, 2.0, 3.0]), y_pred=np.array([1.0, 2.0, 5.0]))
    metrics = compute_metrics(REGRESSION_METRICS, predictions)
    assert metrics["rmse"] == round(math.sqrt(4 / 3), 6)
    assert metrics["mae"] == round(2 / 3, 6)
    assert metrics["r2"] == round(1 - 4 / 2, 6)


def test_fairness_gap_is_the_spread_of_the_primary_metric_across_groups() -> None:
    predictions = Predictions(
        y_true=np.array([1, 1, 0, 0, 1, 0]),
        y_pred=np.array([1, 1, 0, 1, 0, 1]),
        classes=[0, 1],
    )
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    report = fairness_gap("accuracy", predictions, groups, "site")
    assert report.groups == {"a": 1.0, "b": 0.0}
    assert report.gap == 1.0
    assert report.column == "site"


def test_fairness_gap_needs_two_measurable_groups() -> None:
    predictions = Predictions(y_true=np.array([1, 0]), y_pred=np.array([1, 0]), classes=[0, 1])
    report = fairness_gap("accuracy", predictions, np.array([7, 7]), "site")
    assert report.groups == {"7": 1.0}
    assert report.gap is None


def test_primary_metric_is_the_first_requested_or_a_task_default() -> None:
    assert primary_metric(["f1_macro", "accuracy"], True) == "f1_macro"
    assert primary_metric([], True) == "accuracy"
    assert primary_metric([], False) == "rmse"
