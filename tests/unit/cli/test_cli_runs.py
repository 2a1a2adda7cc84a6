"""`kiln runs TJ`: a TrainingJob's runs with the trainer's phase and its age."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.support.fake_custom import FakeCustom

from kiln.api.training_job import TrainingJob
from kiln.cli import main as cli_main
from kiln.cli import runs
from kiln.cli.objects import KilnObjects
from kiln.cli.runs import run_lines, runs_lines

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 1, 0, tzinfo=UTC)


def _job() -> dict[str, Any]:
    finished = {
        "pod": "iris-1-1", "phase": "upload", "phaseStartTime": "2026-03-01T11:00:04Z",
        "finished": True,
        "phases": [
            {"phase": "load", "startTime": "2026-03-01T11:00:00Z", "seconds": 2.5},
            {"phase": "fit", "startTime": "2026-03-01T11:00:02Z", "seconds": 1.25},
            {"phase": "evaluate", "startTime": "2026-03-01T11:00:04Z", "seconds": 0.1},
            {"phase": "upload", "startTime": "2026-03-01T11:00:04Z", "seconds": 0.6},
        ],
    }  # fmt: skip
    running = {
        "pod": "iris-2-1", "phase": "fit", "phaseStartTime": "2026-03-01T12:00:48Z",
        "phases": [
            {"phase": "load", "startTime": "2026-03-01T12:00:40Z", "seconds": 8.0},
            {"phase": "fit", "startTime": "2026-03-01T12:00:48Z"},
        ],
    }  # fmt: skip
    return {
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {
            "model": "iris",
            "estimator": "sklearn.linear_model.LogisticRegression",
            "dataset": {"uri": "s3://d/iris.csv", "target": "species"},
        },
        "status": {
            "runs": [
                {
                    "run": 1,
                    "phase": "Succeeded",
                    "trigger": "create",
                    "attempts": 1,
                    "startTime": "2026-03-01T11:00:00Z",
                    "completionTime": "2026-03-01T11:00:42Z",
                    "modelVersion": "iris-v1",
                    "trainer": finished,
                },
                {
                    "run": 2,
                    "phase": "Running",
                    "trigger": "manual",
                    "attempts": 1,
                    "startTime": "2026-03-01T12:00:30Z",
                    "trainer": running,
                },
            ],
            "trainer": running,
        },
    }


def test_each_run_shows_its_trainers_phase_and_how_long_it_has_been_in_it() -> None:
    lines = runs_lines(TrainingJob.model_validate(_job()), NOW)
    assert lines[0] == "TrainingJob iris: 2 run(s) in the status"
    header, first, second = lines[1:]
    assert header.split() == ["RUN", "PHASE", "TRIGGER", "ATTEMPTS", "TRAINER", "TRIALS",
                              "BEST", "VERSION", "DURATION"]  # fmt: skip
    assert first.split() == ["1", "Succeeded", "create", "1", "upload", "(0.6s)", "-", "-",
                             "iris-v1", "42s"]  # fmt: skip
    assert second.split() == ["2", "Running", "manual", "1", "fit", "12s", "-", "-", "-", "30s"]


def test_a_runs_timeline_lists_every_phase_with_its_start_and_duration() -> None:
    job = TrainingJob.model_validate(_job())
    lines = run_lines(job.status.runs[1], NOW)
    assert lines[:2] == ["run 2: Running", "trainer of pod iris-2-1 (running):"]
    assert [line.split() for line in lines[2:]] == [
        ["PHASE", "STARTED", "TOOK"],
        ["load", "2026-03-01T12:00:40Z", "8s"],
        ["fit", "2026-03-01T12:00:48Z", "12s", "so", "far"],
    ]


def test_a_run_without_a_phase_yet_says_so() -> None:
    document = _job()
    document["status"]["runs"][1].pop("trainer")
    job = TrainingJob.model_validate(document)
    assert run_lines(job.status.runs[1], NOW)[1] == "trainer: no phase seen yet"
    assert runs_lines(job, NOW)[3].split()[4] == "-"


def test_the_command_reads_the_job_and_refuses_an_unknown_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeCustom({("trainingjobs", "iris"): _job()})
    monkeypatch.setattr(runs, "connect", lambda args: KilnObjects(fake, "ml"))
    assert cli_main.main(["runs", "iris", "--run", "1", "-o", "json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["trainer"]["phases"][0] == {
        "phase": "load", "startTime": "2026-03-01T11:00:00Z", "seconds": 2.5
    }  # fmt: skip
    assert cli_main.main(["runs", "iris", "--run", "7"]) == 1
    assert "has no run 7 (kept: 1, 2)" in capsys.readouterr().err
    assert cli_main.main(["runs", "nope"]) == 1
