from __future__ import annotations

import pytest
from tests.support.builders import TrainingJobBuilder

from kiln.api import wire
from kiln.api.training_job import TrainingJob
from kiln.contract.train_report import TrainerSuccess
from kiln.core import lineage as lin

pytestmark = pytest.mark.unit

SHA = "c" * 64


def lineage(**changes: object) -> lin.Lineage:
    values: dict[str, object] = {
        "namespace": "ml",
        "training_job": "iris",
        "training_job_uid": "uid-1",
        "run": 2,
        "dataset_uri": "s3://d/iris.csv",
        "dataset_sha256": SHA,
        "trainer_image": "kiln/trainer:0.1.0",
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 200, "C": 0.5},
        "params_hash": lin.params_hash({"max_iter": 200, "C": 0.5}),
        "seed": 7,
        "parent_version": "iris-v1",
    }
    values.update(changes)
    return lin.Lineage(**values)  # type: ignore[arg-type]


def test_params_hash_ignores_key_order_but_not_values() -> None:
    assert lin.params_hash({"a": 1, "b": [1, 2]}) == lin.params_hash({"b": [1, 2], "a": 1})
    assert lin.params_hash({"a": 1}) != lin.params_hash({"a": 2})
    assert lin.params_hash({"a": 1}) != lin.params_hash({"a": 1.5})
    assert lin.params_hash({}).startswith("sha256:") and len(lin.params_hash({})) == 71


def test_params_hash_is_sha256_of_canonical_json() -> None:
    # sha256 of '{"a":1}'
    assert lin.params_hash({"a": 1}) == (
        "sha256:015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
    )


def test_annotations_hold_everything_to_rerun() -> None:
    annotations = lin.lineage_annotations(lineage())
    assert annotations == {
        "lineage.kiln.dev/training-job": "ml/iris",
        "lineage.kiln.dev/training-job-uid": "uid-1",
        "lineage.kiln.dev/run": "2",
        "lineage.kiln.dev/dataset": f"s3://d/iris.csv@sha256:{SHA}",
        "lineage.kiln.dev/trainer-image": "kiln/trainer:0.1.0",
        "lineage.kiln.dev/estimator": "sklearn.linear_model.LogisticRegression",
        "lineage.kiln.dev/params": '{"C":0.5,"max_iter":200}',
        "lineage.kiln.dev/params-hash": lin.params_hash({"C": 0.5, "max_iter": 200}),
        "lineage.kiln.dev/seed": "7",
        "lineage.kiln.dev/parent-version": "iris-v1",
    }


def test_annotations_round_trip() -> None:
    original = lineage()
    assert lin.parse_lineage(lin.lineage_annotations(original)) == original


def test_first_version_has_no_parent_and_custom_command_no_estimator() -> None:
    annotations = lin.lineage_annotations(lineage(parent_version=None, estimator=None))
    assert wire.LINEAGE_PARENT_VERSION not in annotations
    assert wire.LINEAGE_ESTIMATOR not in annotations
    assert lin.parse_lineage(annotations).parent_version is None


def test_huge_params_are_kept_as_hash_only() -> None:
    params = {"weights": list(range(5000))}
    annotations = lin.lineage_annotations(
        lineage(params=params, params_hash=lin.params_hash(params))
    )
    assert wire.LINEAGE_PARAMS not in annotations
    assert annotations[wire.LINEAGE_PARAMS_HASH] == lin.params_hash(params)


def test_dataset_uri_with_at_sign_survives() -> None:
    original = lineage(dataset_uri="https://u@host/data.csv")
    assert lin.parse_lineage(lin.lineage_annotations(original)).dataset_uri == (
        "https://u@host/data.csv"
    )


def test_lineage_of_a_run_prefers_what_the_trainer_reports_it_used() -> None:
    job = TrainingJob.model_validate(
        TrainingJobBuilder("iris").uid("uid-1").params(C=1.0).spec(evaluation={"seed": 7}).obj()
    )
    report = {
        "ok": True,
        "artifact": {"uri": "s3://m/model.skops", "sha256": SHA},
        "dataset": {"uri": "s3://d/iris.csv", "sha256": SHA},
    }
    from_spec = lin.lineage_of_run(
        job, 2, TrainerSuccess.model_validate(report), "kiln/trainer:1", "iris-v1"
    )
    assert (from_spec.training_job, from_spec.training_job_uid, from_spec.run) == (
        "iris",
        "uid-1",
        2,
    )
    assert (from_spec.params, from_spec.seed, from_spec.parent_version) == (
        {"C": 1.0},
        7,
        "iris-v1",
    )
    assert from_spec.estimator == "sklearn.linear_model.LogisticRegression"
    assert from_spec.params_hash == lin.params_hash({"C": 1.0})

    resolved = {**report, "estimator": "sklearn.svm.SVC", "params": {"C": 1.0, "kernel": "rbf"}}
    from_report = lin.lineage_of_run(
        job, 2, TrainerSuccess.model_validate(resolved), "kiln/trainer:1", None
    )
    assert (from_report.estimator, from_report.params) == (
        "sklearn.svm.SVC",
        {"C": 1.0, "kernel": "rbf"},
    )
    assert from_report.params_hash == lin.params_hash({"C": 1.0, "kernel": "rbf"})
