"""The trainer in-process against file:// and an HTTP server on loopback."""

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from kiln.trainer.logs import EventLog
from kiln.trainer.main import run_trainer

pytestmark = pytest.mark.component

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


def train(spec: dict[str, Any], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    termination_log = tmp_path / "termination-log"
    env = {"KILN_TRAIN_SPEC": json.dumps(spec), "KILN_TERMINATION_LOG": str(termination_log)}
    code = run_trainer(env, EventLog(io.StringIO()))
    return code, json.loads(termination_log.read_bytes())


def diabetes_spec(output: Path, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": "diabetes",
        "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
        "params": {"max_iter": 50},
        "dataset": {
            "uri": (EXAMPLES / "diabetes.csv").as_uri(),
            "target": "target",
            "sensitiveColumn": "sex",
        },
        "evaluation": {"testSize": 0.25, "seed": 3},
        "output": {"uri": output.as_uri()},
        "run": {"namespace": "ml", "trainingJob": "diabetes", "number": 1},
    }
    spec.update(overrides)
    return spec


def test_regression_reports_error_metrics_and_the_fairness_gap(tmp_path: Path) -> None:
    code, report = train(diabetes_spec(tmp_path / "out"), tmp_path)
    assert code == 0, report
    assert set(report["metrics"]) == {"rmse", "mae", "r2"}
    fairness = report["fairness"]
    assert fairness["column"] == "sex" and fairness["metric"] == "rmse"
    groups = fairness["groups"]
    assert set(groups) == {"1.0", "2.0"}
    assert fairness["gap"] == round(abs(groups["1.0"] - groups["2.0"]), 6)
    assert "sex" not in [f["name"] for f in report["inputSchema"]["features"]]
    model = tmp_path / "out" / "ml" / "diabetes" / "run-1" / "model.skops"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == report["artifact"]["sha256"]
    # The baseline beside it: the raw columns of the input schema, regression predictions.
    path = model.with_name("baseline.json")
    assert report["baseline"] == {
        "uri": path.as_uri(),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    baseline = json.loads(path.read_bytes())
    assert baseline["task"] == "regression"
    assert [f["name"] for f in baseline["features"]] == [
        f["name"] for f in report["inputSchema"]["features"]
    ]
    assert baseline["predictions"]["edges"] and "labels" not in baseline["predictions"]
    assert baseline["rows"] == report["split"]["trainRows"]


def test_classification_metric_on_a_regressor_is_an_invalid_spec(tmp_path: Path) -> None:
    spec = diabetes_spec(tmp_path / "out", evaluation={"metrics": ["accuracy"]})
    code, report = train(spec, tmp_path)
    assert (code, report["reason"]) == (2, "InvalidSpec")
    assert "rmse" in report["message"]


def test_http_dataset_is_an_invalid_spec_as_in_a_training_job(tmp_path: Path) -> None:
    # The spec's dataset is the TrainingJob's spec.dataset, whose CRD refuses plain http://.
    spec = diabetes_spec(tmp_path / "out")
    spec["dataset"] = {"uri": "http://127.0.0.1:9/diabetes.csv", "target": "target"}
    code, report = train(spec, tmp_path)
    assert (code, report["reason"]) == (2, "InvalidSpec")
    assert "https://" in report["message"]
