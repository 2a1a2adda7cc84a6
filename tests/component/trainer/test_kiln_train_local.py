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


def _phase_records(log: io.StringIO) -> list[dict[str, Any]]:
    from kiln.contract.progress import parse_phase_line

    records = [json.loads(line) for line in log.getvalue().splitlines()]
    return [r for r in records if parse_phase_line(json.dumps(r)) is not None]


def test_every_phase_is_logged_as_the_contract_reads_it_and_reported_with_its_start(
    tmp_path: Path,
) -> None:
    from kiln.contract.progress import TRAINING_PHASES
    from kiln.contract.train_report import TrainerSuccess, parse_termination_message

    log = io.StringIO()
    termination_log = tmp_path / "termination-log"
    spec = diabetes_spec(tmp_path / "out")
    env = {"KILN_TRAIN_SPEC": json.dumps(spec), "KILN_TERMINATION_LOG": str(termination_log)}
    assert run_trainer(env, EventLog(log)) == 0

    phases = _phase_records(log)
    assert [(r["event"], r["phase"]) for r in phases] == [
        (event, phase) for phase in TRAINING_PHASES for event in ("phase.start", "phase.end")
    ]
    report = parse_termination_message(termination_log.read_text())
    assert isinstance(report, TrainerSuccess)
    # The report repeats the log's start times exactly, and every phase's duration.
    assert report.phase_starts == {
        r["phase"]: r["ts"] for r in phases if r["event"] == "phase.start"
    }
    assert report.duration_seconds == {
        r["phase"]: r["seconds"] for r in phases if r["event"] == "phase.end"
    }
    starts = [report.phase_starts[p] for p in TRAINING_PHASES]
    assert starts == sorted(starts)
    full = json.loads((tmp_path / "out/ml/diabetes/run-1/report.json").read_bytes())
    # Written while uploading: the upload has started, its duration is not known yet.
    assert set(full["phaseStarts"]) == set(TRAINING_PHASES)
    assert set(full["durationSeconds"]) == {"load", "fit", "evaluate"}


def test_a_failure_reports_the_phases_it_ran_the_failed_one_included(tmp_path: Path) -> None:
    from kiln.contract.train_report import TrainerFailure, parse_termination_message

    log = io.StringIO()
    termination_log = tmp_path / "termination-log"
    spec = diabetes_spec(tmp_path / "out")
    spec["dataset"] = {**spec["dataset"], "target": "no_such_column"}
    env = {"KILN_TRAIN_SPEC": json.dumps(spec), "KILN_TERMINATION_LOG": str(termination_log)}
    assert run_trainer(env, EventLog(log)) == 5  # InvalidDataset, while loading

    report = parse_termination_message(termination_log.read_text())
    assert isinstance(report, TrainerFailure) and report.reason == "InvalidDataset"
    assert set(report.phase_starts) == set(report.duration_seconds) == {"load"}
    (start,) = [r for r in _phase_records(log) if r["event"] == "phase.start"]
    assert report.phase_starts["load"] == start["ts"]


def test_a_failure_before_any_phase_reports_none(tmp_path: Path) -> None:
    spec = diabetes_spec(tmp_path / "out", params={"no_such_param": 1})
    code, report = train(spec, tmp_path)
    assert (code, report["reason"]) == (7, "InvalidParams")
    assert "phaseStarts" not in report and "durationSeconds" not in report
