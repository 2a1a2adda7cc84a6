import json

import pytest

from kiln.contract.train_report import TrainerSuccess, parse_termination_message
from kiln.trainer.errors import Reason
from kiln.trainer.report import MAX_MESSAGE_BYTES, bounded, encode, failure_report

pytestmark = pytest.mark.unit


def _success(features: int, classes: int = 3) -> dict[str, object]:
    return {
        "ok": True,
        "artifact": {"uri": "s3://m/ns/job/run-1/model.skops", "sha256": "a" * 64},
        "baseline": {"uri": "s3://m/ns/job/run-1/baseline.json", "sha256": "c" * 64},
        "dataset": {"uri": "s3://d/x.csv", "sha256": "b" * 64, "rows": 10},
        "metrics": {"accuracy": 0.5},
        "params": {"n_estimators": 10},
        "fairness": {"column": "g", "metric": "accuracy", "gap": 0.1, "groups": {"a": 0.1}},
        "inputSchema": {
            "features": [{"name": f"feature_{i:05d}", "dtype": "float64"} for i in range(features)],
            "target": {"name": "y", "dtype": "int64"},
            "classes": [f"class-{i}" for i in range(classes)],
        },
        "reportUri": "s3://m/ns/job/run-1/report.json",
    }


def test_small_report_is_written_unchanged() -> None:
    report = _success(features=4)
    assert json.loads(bounded(report)) == report


def test_huge_schema_is_truncated_under_the_kubernetes_limit() -> None:
    report = _success(features=5000, classes=2000)
    message = bounded(report)
    assert len(message) <= MAX_MESSAGE_BYTES < 4096
    decoded = json.loads(message)
    assert decoded["truncated"] is True
    # What the operator needs to register the model survives every shrink step.
    assert decoded["artifact"] == report["artifact"]
    assert decoded["baseline"] == report["baseline"]
    assert decoded["dataset"] == report["dataset"]
    assert decoded["metrics"] == report["metrics"]
    assert decoded["fairness"]["gap"] == 0.1
    assert decoded["inputSchema"]["featuresCount"] == 5000
    assert decoded["inputSchema"]["features"][0] == "feature_00000"  # a prefix, in order


def test_baseline_reference_survives_the_last_resort_shrink() -> None:
    report = _success(features=10)
    # Too many metrics for any shrink step: only the essentials are left.
    report["metrics"] = {f"metric_{i:04d}": 0.123456 for i in range(400)}
    message = bounded(report)
    assert len(message) <= MAX_MESSAGE_BYTES
    parsed = parse_termination_message(message.decode())
    assert isinstance(parsed, TrainerSuccess) and parsed.truncated
    assert parsed.baseline is not None
    assert parsed.baseline.uri == "s3://m/ns/job/run-1/baseline.json"
    assert parsed.baseline.sha256 == "c" * 64
    assert parsed.artifact.sha256 == "a" * 64
    assert parsed.metrics == {}  # the essentials only: the last resort was reached


def test_prefix_kept_is_as_long_as_fits() -> None:
    message = bounded(_success(features=600))
    assert MAX_MESSAGE_BYTES - 20 < len(message) <= MAX_MESSAGE_BYTES


def test_failure_report_carries_reason_code_and_retryability() -> None:
    report = failure_report(Reason.DATASET_UNAVAILABLE, "no such bucket")
    assert report == {
        "ok": False,
        "reason": "DatasetUnavailable",
        "message": "no such bucket",
        "exitCode": 3,
        "retryable": True,
    }


def test_very_long_failure_message_stays_within_the_limit() -> None:
    message = bounded(failure_report(Reason.TRAINING_FAILED, "é" * 10_000))
    assert len(message) <= MAX_MESSAGE_BYTES
    assert json.loads(message)["reason"] == "TrainingFailed"


def test_encoding_is_compact() -> None:
    assert encode({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'


def test_category_lists_go_before_the_column_types() -> None:
    features = [
        {
            "name": f"c{i}",
            "type": "categorical",
            "dtype": "str",
            "categories": [f"value-{j}" for j in range(40)],
        }
        for i in range(12)
    ]
    report = {"ok": True, "inputSchema": {"features": features}, "artifact": {"uri": "x"}}
    shrunk = json.loads(bounded(report))
    assert shrunk["truncated"] is True
    kept = shrunk["inputSchema"]["features"]
    # Types survive; the categories are in the artifact, their count in the report.
    assert [f["type"] for f in kept] == ["categorical"] * 12
    assert all("categories" not in f and f["categoriesCount"] == 40 for f in kept)
