"""kiln-train's trial mode and a search's final training, in-process on iris (file://)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from kiln.trainer.logs import EventLog
from kiln.trainer.main import run_trainer

pytestmark = pytest.mark.component

IRIS = Path(__file__).resolve().parents[3] / "examples" / "data" / "iris.csv"


def run(spec: dict[str, Any], tmp_path: Path) -> tuple[int, dict[str, Any], str]:
    termination_log = tmp_path / "termination-log"
    env = {"KILN_TRAIN_SPEC": json.dumps(spec), "KILN_TERMINATION_LOG": str(termination_log)}
    stdout = io.StringIO()
    code = run_trainer(env, EventLog(stdout))
    return code, json.loads(termination_log.read_bytes()), stdout.getvalue()


def iris_spec(output: Path, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": "iris",
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 300},
        "dataset": {"uri": IRIS.as_uri(), "target": "species"},
        "evaluation": {"testSize": 0.25, "seed": 7, "metrics": ["accuracy"]},
        "output": {"uri": output.as_uri()},
        "run": {"namespace": "ml", "trainingJob": "iris", "number": 1},
    }
    spec.update(overrides)
    return spec


def trial(number: int, **validation: Any) -> dict[str, Any]:
    return {"number": number, "metric": "accuracy", "maximize": True, **validation}


def test_a_k_fold_trial_reports_the_mean_objective_and_writes_no_model(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = iris_spec(out, params={"max_iter": 300, "C": 1.0}, trial=trial(3, kFolds=4))
    code, report, log = run(spec, tmp_path)
    assert code == 0, report
    assert report["trial"] == 3 and report["metric"] == "accuracy"
    assert len(report["folds"]) == 4
    assert report["objective"] == pytest.approx(sum(report["folds"]) / 4, abs=1e-6)
    assert 0.8 < report["objective"] <= 1.0
    # 150 rows, a quarter held out as the test split: the folds cover the 112 training rows.
    assert report["trainRows"] == 112
    stored = json.loads((out / "ml/iris/run-1/trials/trial-3.json").read_text())
    assert stored["objective"] == report["objective"]
    assert not list(out.rglob("model.skops"))
    assert '"trial.fold"' in log
    # A trial's phases: no evaluate (it scores while it fits), each start in its report.
    from kiln.contract.progress import TRIAL_PHASES, parse_phase_line

    starts = [e for e in map(parse_phase_line, log.splitlines()) if e and e.kind == "start"]
    assert tuple(e.phase for e in starts) == TRIAL_PHASES
    assert report["phaseStarts"] == {e.phase: e.ts for e in starts}
    assert set(report["durationSeconds"]) == set(TRIAL_PHASES)


def test_a_holdout_trial_is_reproducible(tmp_path: Path) -> None:
    spec = iris_spec(tmp_path / "out", trial=trial(0, validationFraction=0.3))
    first = run(spec, tmp_path)[1]
    second = run(spec, tmp_path)[1]
    assert first["objective"] == second["objective"]
    assert len(first["folds"]) == 1


def test_a_parameter_the_estimator_lacks_fails_the_trial_before_loading(tmp_path: Path) -> None:
    spec = iris_spec(
        tmp_path / "out",
        params={"max_iter": 300, "depth": 3},
        dataset={"uri": (tmp_path / "absent.csv").as_uri(), "target": "species"},
        trial=trial(1, kFolds=3),
    )
    code, report, _ = run(spec, tmp_path)
    assert (code, report["reason"]) == (7, "InvalidParams")
    assert "depth" in report["message"]


def test_an_objective_of_the_wrong_task_is_invalid_spec(tmp_path: Path) -> None:
    spec = iris_spec(tmp_path / "out", trial={**trial(0, kFolds=3), "metric": "rmse"})
    code, report, _ = run(spec, tmp_path)
    assert (code, report["reason"]) == (2, "InvalidSpec")


def test_the_final_training_gathers_every_trials_report_best_first(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for number, c in enumerate([0.01, 1.0]):
        spec = iris_spec(out, params={"max_iter": 300, "C": c}, trial=trial(number, kFolds=3))
        assert run(spec, tmp_path)[0] == 0
    reports = [
        json.loads((out / f"ml/iris/run-1/trials/trial-{n}.json").read_text()) for n in (0, 1)
    ]
    best = max((0, 1), key=lambda n: (reports[n]["objective"], -n))
    search = {
        "strategy": "grid",
        "seed": 7,
        "trials": 3,  # trial 2 never reported
        "bestTrial": best,
        "metric": "accuracy",
        "maximize": True,
        "bestObjective": reports[best]["objective"],
    }
    final = iris_spec(out, params={"max_iter": 300, "C": [0.01, 1.0][best]}, search=search)
    code, report, _ = run(final, tmp_path)
    assert code == 0, report
    assert report["artifact"]["uri"].endswith("run-1/model.skops")
    assert "accuracy" in report["metrics"]  # measured once, on the test split
    gathered = json.loads(Path(report["searchReportUri"].removeprefix("file://")).read_text())
    assert [t["trial"] for t in gathered["trials"]][:2] == [best, 1 - best]
    assert gathered["trials"][-1] == {"trial": 2, "ok": False, "report": "missing"}
    assert gathered["search"]["bestTrial"] == best
