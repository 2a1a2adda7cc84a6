"""`kiln trials TJ`: a run's trials from its status or its search.json, best first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.support.fake_custom import FakeCustom

from kiln.api.training_job import TrainingJob
from kiln.cli import main as cli_main
from kiln.cli import trials
from kiln.cli.main import build_parser
from kiln.cli.objects import KilnObjects
from kiln.cli.trials import build_view, load_view, select_run, trials_lines
from kiln.cli.versions import CliError

pytestmark = pytest.mark.unit


def _trial(number: int, phase: str, objective: float | None = None, **extra: Any) -> dict:
    record = {
        "trial": number,
        "phase": phase,
        "params": {"C": 0.1 * (number + 1), "solver": "lbfgs"},
        "attempts": 1,
        "startTime": "2026-03-01T12:00:00Z",
        "completionTime": "2026-03-01T12:00:42Z",
        **extra,
    }
    if objective is not None:
        record["objective"] = objective
        record["metrics"] = {"accuracy": objective, "f1_macro": objective - 0.01}
    return record


def _job(metric: str = "accuracy", **run: Any) -> dict[str, Any]:
    search = {
        "stage": "Training",
        "total": 8,
        "started": 8,
        "succeeded": 6,
        "failed": 2,
        "best": [
            _trial(3, "Succeeded", 0.97),
            _trial(0, "Succeeded", 0.95),
            _trial(5, "Succeeded", 0.93),
        ],
        "failures": [
            _trial(6, "Failed", reason="InvalidParams", message="C must be > 0", attempts=2),
        ],
    }
    return {
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {
            "model": "iris",
            "estimator": "sklearn.linear_model.LogisticRegression",
            "dataset": {"uri": "s3://d/iris.csv", "target": "species"},
            "search": {
                "strategy": "random",
                "maxTrials": 8,
                "objective": {"metric": metric},
                "parameters": [
                    {"name": "C", "range": {"min": 0.01, "max": 10, "scale": "log"}},
                    {"name": "solver", "values": ["lbfgs", "newton-cg"]},
                ],
            },
        },
        "status": {
            "runs": [
                {"run": 1, "phase": "Succeeded", "modelVersion": "iris-v1"},
                {"run": 2, "phase": "Running", "search": search, **run},
            ]
        },
    }


def test_status_source_sorts_best_first_then_failures_and_says_it_is_bounded() -> None:
    job = TrainingJob.model_validate(_job())
    view = build_view(job, select_run(job, None))
    assert view.source == "status"
    assert [r.trial for r in view.trials] == [3, 0, 5, 6]
    lines = trials_lines(view)
    assert lines[0] == "TrainingJob iris run 2: objective accuracy (maximize)"
    assert lines[1].split() == [
        "TRIAL", "PHASE", "C", "solver", "ACCURACY", "f1_macro", "ATTEMPTS", "DURATION",
    ]  # fmt: skip
    assert lines[2].split() == ["*", "3", "Succeeded", "0.4", "lbfgs", "0.97", "0.96", "1", "42s"]
    assert lines[3].split()[0] == "0"  # no mark: not the winner
    assert lines[5].split() == ["6", "Failed", "0.7", "lbfgs", "-", "-", "2", "42s"]
    assert lines[6:9] == [
        "failed trials:",
        "  trial 6: InvalidParams: C must be > 0",
        "* the winner",
    ]
    assert lines[9] == (
        "3 best of 6 succeeded, 1 latest of 2 failed, 8 trials in all "
        "(status; the full report appears once the run registers)"
    )


def test_a_minimized_objective_sorts_the_lowest_first() -> None:
    raw = _job(metric="log_loss")
    search = raw["status"]["runs"][1]["search"]
    search["stage"] = "Searching"
    search["best"] = [_trial(2, "Succeeded", 0.9), _trial(4, "Succeeded", 0.2)]
    search["active"] = [{"trial": 7, "phase": "Running", "params": {"C": 1}, "attempts": 1}]
    job = TrainingJob.model_validate(raw)
    view = build_view(job, select_run(job, 2))
    assert not view.maximize
    assert [r.trial for r in view.trials] == [4, 2, 7, 6]
    lines = trials_lines(view)
    assert lines[0].endswith("objective log_loss (minimize)")
    assert lines[2].split()[:2] == ["*", "4"]
    assert "* the best so far (the search is running)" in lines
    assert "1 active" in lines[-1]


def _report(tmp_path: Path) -> str:
    trials = [
        {"ok": True, "trial": t, "metric": "accuracy", "objective": o,
         "metrics": {"accuracy": o, "f1_macro": o - 0.02},
         "params": {"C": c, "solver": "lbfgs", "max_iter": 100, "random_state": 0},
         "durationSeconds": {"load": 1.0, "fit": 2.5}}
        for t, o, c in [(3, 0.97, 0.4), (0, 0.95, 0.1), (5, 0.93, 0.6), (1, 0.9, 0.2),
                        (2, 0.85, 0.3), (4, 0.8, 0.5), (7, 0.5, 0.8)]
    ]  # fmt: skip
    trials.append({"ok": False, "trial": 6, "report": "missing"})
    path = tmp_path / "search.json"
    summary = {"metric": "accuracy", "maximize": True, "bestTrial": 3, "trials": 8}
    path.write_text(json.dumps({"search": summary, "finalParams": {}, "trials": trials}))
    return path.as_uri()


def _version(report_uri: str | None) -> dict[str, Any]:
    search = {"strategy": "random", "trials": 8, "bestTrial": 3, "bestObjective": 0.97,
              "objective": {"metric": "accuracy", "direction": "maximize"},
              "space": [{"name": "C"}, {"name": "solver"}]}  # fmt: skip
    if report_uri:
        search["report"] = report_uri
    return {
        "metadata": {
            "name": "iris-v2",
            "annotations": {"lineage.kiln.dev/search": json.dumps(search)},
        },
        "spec": {"model": "iris", "version": 2},
    }


def test_the_report_source_lists_every_trial_with_the_searched_params(tmp_path: Path) -> None:
    uri = _report(tmp_path)
    custom = FakeCustom(
        {
            ("trainingjobs", "iris"): _job(modelVersion="iris-v2", phase="Succeeded"),
            ("modelversions", "iris-v2"): _version(uri),
        }
    )
    view = load_view(KilnObjects(custom, "ml"), "iris", None)
    assert view.source == "report"
    assert [r.trial for r in view.trials] == [3, 0, 5, 1, 2, 4, 7, 6]
    assert view.trials[3].params == {"C": 0.2, "solver": "lbfgs"}  # not max_iter, random_state
    assert view.trials[3].attempts is None and view.trials[3].seconds == 3.5
    # Trial 6 left no report; the status still has its reason.
    assert (view.trials[-1].phase, view.trials[-1].reason) == ("Failed", "InvalidParams")
    lines = trials_lines(view)
    assert lines[0].endswith("→ iris-v2")
    assert lines[1].split()[2:4] == ["C", "solver"]
    assert lines[2].split()[:2] == ["*", "3"]
    assert sum(line.startswith("*") for line in lines) == 2  # the row and its legend
    assert lines[-1] == f"8 of 8 trials (from {uri})"


def test_an_unreadable_report_falls_back_to_the_status_and_says_why(tmp_path: Path) -> None:
    missing = (tmp_path / "gone.json").as_uri()
    custom = FakeCustom(
        {
            ("trainingjobs", "iris"): _job(modelVersion="iris-v2"),
            ("modelversions", "iris-v2"): _version(missing),
        }
    )
    view = load_view(KilnObjects(custom, "ml"), "iris", 2)
    assert view.source == "status"
    assert f"cannot read the full report: {missing}" in view.footer
    deleted = FakeCustom({("trainingjobs", "iris"): _job(modelVersion="iris-v2")})
    view = load_view(KilnObjects(deleted, "ml"), "iris", 2)
    assert view.footer.endswith("(status; ModelVersion iris-v2 not found)")


def test_runs_without_a_search_or_unknown_runs_are_errors() -> None:
    job = TrainingJob.model_validate(_job())
    with pytest.raises(CliError, match="run 1 of TrainingJob iris has no search"):
        select_run(job, 1)
    with pytest.raises(CliError, match=r"has no run 9 \(runs kept: 1, 2\)"):
        select_run(job, 9)
    plain = _job()
    plain["status"]["runs"] = plain["status"]["runs"][:1]
    with pytest.raises(CliError, match="no run with a search"):
        select_run(TrainingJob.model_validate(plain), None)


def test_a_missing_trainingjob_exits_non_zero_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(trials, "connect", lambda args: KilnObjects(FakeCustom({}), "ml"))
    assert cli_main.main(["trials", "nope", "-n", "ml"]) == 1
    assert "trainingjob ml/nope not found" in capsys.readouterr().err


def test_the_command_is_registered() -> None:
    args = build_parser().parse_args(["trials", "iris", "--run", "3", "-o", "json"])
    assert (args.name, args.run, args.output) == ("iris", 3, "json")


def test_json_output_has_every_trial_the_direction_and_the_source(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeCustom({("trainingjobs", "iris"): _job()})
    monkeypatch.setattr(trials, "connect", lambda args: KilnObjects(fake, "ml"))
    assert cli_main.main(["trials", "iris", "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["direction"], document["source"], document["winner"]) == (
        "maximize",
        "status",
        3,
    )
    assert [t["trial"] for t in document["trials"]] == [3, 0, 5, 6]
    assert document["trials"][-1]["reason"] == "InvalidParams"
