"""`kiln compare A B`: two ModelVersions side by side, differences marked."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.support.fake_custom import FakeCustom

from kiln.cli import compare
from kiln.cli import main as cli_main
from kiln.cli.compare import compare_lines, compare_rows, resolve
from kiln.cli.main import build_parser
from kiln.cli.objects import KilnObjects
from kiln.cli.versions import CliError

pytestmark = pytest.mark.unit

SHA_DATA = "ab" * 32


def _mv(version: int, accuracy: float, params: dict[str, Any], **spec: Any) -> dict[str, Any]:
    search = {"strategy": "random", "trials": 8, "failed": 1, "bestObjective": accuracy - 0.01,
              "objective": {"metric": "accuracy", "direction": "maximize"}}  # fmt: skip
    annotations = {
        "lineage.kiln.dev/training-job": "ml/iris",
        "lineage.kiln.dev/dataset": f"s3://d/iris.csv@sha256:{SHA_DATA}",
        "lineage.kiln.dev/trainer-image": "registry/kiln-trainer:1.4",
        "lineage.kiln.dev/estimator": "sklearn.linear_model.LogisticRegression",
        "lineage.kiln.dev/params": json.dumps(params, sort_keys=True),
        "lineage.kiln.dev/params-hash": "sha256:00",
        "lineage.kiln.dev/seed": "0",
        "lineage.kiln.dev/search": json.dumps(search),
    }
    return {
        "metadata": {
            "name": f"iris-v{version}",
            "creationTimestamp": f"2026-03-0{version}T12:00:00Z",
            "labels": {"kiln.dev/training-job": "iris", "kiln.dev/run": str(version)},
            "annotations": annotations,
        },
        "spec": {
            "model": "iris",
            "version": version,
            "framework": "scikit-learn",
            "libraryVersions": {"python": "3.11.9", "sklearn": "1.5.2"},
            "metrics": {"accuracy": accuracy, "f1_macro": 0.9},
            "trainingData": {"uri": "s3://d/iris.csv", "sha256": SHA_DATA},
            "source": {"name": "iris", "namespace": "ml", "run": version},
            **spec,
        },
        "status": {
            "approval": {
                "state": "Approved" if accuracy >= 0.9 else "Rejected",
                "by": "kiln-operator",
                "checks": [
                    {"name": "threshold/accuracy", "passed": accuracy >= 0.9,
                     "metric": "accuracy", "value": accuracy, "min": 0.9}
                ],
            }
        },
    }  # fmt: skip


def _by_field(rows: list[compare.Row]) -> dict[str, compare.Row]:
    return {row.field: row for row in rows}


def test_differences_are_marked_with_metric_deltas_and_equal_rows_are_not() -> None:
    a = _mv(2, 0.85, {"C": 0.1, "max_iter": 100})
    b = _mv(3, 0.95, {"C": 2.5, "max_iter": 100, "tol": 0.001},
            libraryVersions={"python": "3.11.9", "sklearn": "1.6.0"})  # fmt: skip
    rows = _by_field(compare_rows(a, b))
    for same in ("estimator", "trainerImage", "params.max_iter", "dataset.sha256",
                 "library.python", "metrics.f1_macro", "search.strategy", "seed"):  # fmt: skip
        assert not rows[same].differs, same
    for different in ("params.C", "library.sklearn", "metrics.accuracy", "approval",
                      "gate.threshold/accuracy", "created", "trainingJob"):  # fmt: skip
        assert rows[different].differs, different
    assert rows["params.tol"].a is None and rows["params.tol"].b == 0.001
    fields = [row.field for row in compare_rows(a, b)]
    assert fields.index("params.tol") == fields.index("params.max_iter") + 1  # among the params
    assert rows["metrics.accuracy"].delta == pytest.approx(0.1)
    assert rows["search.bestObjective"].delta == pytest.approx(0.1)
    assert rows["params.C"].delta is None  # deltas are for metrics

    lines = compare_lines("iris-v2", "iris-v3", compare_rows(a, b))
    assert lines[0].split() == ["FIELD", "iris-v2", "iris-v3", "Δ", "(B-A)"]
    table = {line.split()[1] if line.startswith("≠") else line.split()[0]: line for line in lines}
    assert table["metrics.accuracy"].split() == ["≠", "metrics.accuracy", "0.85", "0.95", "+0.1"]
    assert table["metrics.f1_macro"].split() == ["metrics.f1_macro", "0.9", "0.9"]
    assert table["params.tol"].split() == ["≠", "params.tol", "-", "0.001"]
    assert table["gate.threshold/accuracy"].split() == [
        "≠", "gate.threshold/accuracy", "FAIL", "0.85", "≥", "0.9", "pass", "0.95", "≥", "0.9",
    ]  # fmt: skip
    digest = "abababababababab…"
    assert table["dataset.sha256"].split() == ["dataset.sha256", digest, digest]
    assert (
        lines[-1] == f"≠ {sum(r.differs for r in compare_rows(a, b))} of {len(rows)} fields differ"
    )


def test_a_version_compared_with_itself_has_no_marks() -> None:
    a = _mv(2, 0.95, {"C": 1.0})
    lines = compare_lines("iris-v2", "iris-v2", compare_rows(a, a))
    assert not any(line.startswith("≠ ") and "fields differ" not in line for line in lines)
    assert lines[-1].startswith("≠ 0 of ")


def test_runs_resolve_to_their_versions_and_missing_ones_are_named() -> None:
    job = {
        "metadata": {"name": "iris"},
        "status": {
            "runs": [
                {"run": 2, "phase": "Succeeded", "modelVersion": "iris-v2"},
                {"run": 4, "phase": "Failed"},
            ]
        },
    }
    objects = KilnObjects(
        FakeCustom(
            {
                ("trainingjobs", "iris"): job,
                ("modelversions", "iris-v2"): _mv(2, 0.9, {}),
                ("modelversions", "iris-v3"): _mv(3, 0.9, {}),
            }
        ),
        "ml",
    )
    assert resolve(objects, "iris/2")["metadata"]["name"] == "iris-v2"
    # Run 3's record was pruned: its version is found by its labels.
    assert resolve(objects, "iris/3")["metadata"]["name"] == "iris-v3"
    with pytest.raises(CliError, match=r"run 4 of TrainingJob iris has no ModelVersion \(phase"):
        resolve(objects, "iris/4")
    with pytest.raises(CliError, match="modelversion ml/iris-v9 not found"):
        resolve(objects, "iris-v9")
    with pytest.raises(CliError, match="expected a ModelVersion name or TRAININGJOB/RUN"):
        resolve(objects, "iris/latest")


def test_a_missing_version_exits_non_zero_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeCustom({("modelversions", "iris-v2"): _mv(2, 0.9, {})})
    monkeypatch.setattr(compare, "connect", lambda args: KilnObjects(fake, "ml"))
    assert cli_main.main(["compare", "iris-v2", "iris-v7", "-n", "ml"]) == 1
    captured = capsys.readouterr()
    assert "modelversion ml/iris-v7 not found" in captured.err
    assert captured.out == ""


def test_json_output_keeps_raw_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeCustom(
        {
            ("modelversions", "iris-v2"): _mv(2, 0.85, {"C": 0.1}),
            ("modelversions", "iris-v3"): _mv(3, 0.95, {"C": 0.1}),
        }
    )
    monkeypatch.setattr(compare, "connect", lambda args: KilnObjects(fake, "ml"))
    assert cli_main.main(["compare", "iris-v2", "iris-v3", "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    rows = {r["field"]: r for r in document["rows"]}
    assert (document["a"], document["b"]) == ("iris-v2", "iris-v3")
    assert rows["dataset.sha256"] == {
        "field": "dataset.sha256", "a": SHA_DATA, "b": SHA_DATA, "differs": False, "delta": None,
    }  # fmt: skip
    assert rows["params.C"]["differs"] is False


def test_the_command_is_registered() -> None:
    args = build_parser().parse_args(["compare", "iris-v2", "iris/3", "-n", "ml"])
    assert (args.a, args.b, args.namespace, args.output) == ("iris-v2", "iris/3", "ml", "table")
