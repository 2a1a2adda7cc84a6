import json

import pytest
from pydantic import ValidationError

from kiln.contract.train_spec import DatasetSpec, TrainSpec
from kiln.trainer.errors import Reason, TrainingError
from kiln.trainer.main import parse_spec

pytestmark = pytest.mark.unit


def _spec(**overrides: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "model": "iris",
        "estimator": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 10},
        "dataset": {"uri": "s3://data/iris.csv", "target": "species"},
        "evaluation": {"testSize": 0.3, "seed": 7, "metrics": ["accuracy"]},
        "output": {"uri": "s3://models/prefix/"},
        "run": {"namespace": "ml", "trainingJob": "iris", "number": 3},
    }
    spec.update(overrides)
    return spec


def test_camel_case_json_round_trips() -> None:
    spec = TrainSpec.model_validate(_spec())
    assert spec.evaluation.test_size == 0.3
    assert spec.run.training_job == "iris"
    again = TrainSpec.model_validate_json(spec.model_dump_json(by_alias=True))
    assert again == spec


def test_artifact_prefix_is_output_namespace_job_run() -> None:
    spec = TrainSpec.model_validate(_spec())
    assert spec.artifact_prefix() == "s3://models/prefix/ml/iris/run-3"


def test_dataset_is_the_training_jobs_spec_dataset() -> None:
    # One model for both sides: the trainer accepts what a TrainingJob carries.
    from kiln.api.training_job import DatasetSpec as TrainingJobDataset

    assert DatasetSpec is TrainingJobDataset


def test_format_defaults_to_csv_as_in_the_crd() -> None:
    assert DatasetSpec(uri="s3://b/data.parquet", target="y").format == "csv"
    assert DatasetSpec(uri="s3://b/data.bin", target="y", format="parquet").format == "parquet"


def test_dataset_uri_scheme_is_the_crds() -> None:
    with pytest.raises(ValidationError, match="must start with s3://, file:// or https://"):
        DatasetSpec(uri="http://h/data.csv", target="y")


def test_target_listed_as_feature_is_rejected() -> None:
    with pytest.raises(ValidationError, match="must not be listed"):
        DatasetSpec(uri="s3://b/d.csv", target="y", features=["a", "y"])


def test_unknown_metric_and_extra_keys_are_rejected() -> None:
    with pytest.raises(ValidationError):
        TrainSpec.model_validate(_spec(evaluation={"metrics": ["accuracyy"]}))
    with pytest.raises(ValidationError):
        TrainSpec.model_validate(_spec(paramz={}))


def test_parse_spec_turns_validation_errors_into_one_invalid_spec_line() -> None:
    bad = _spec(dataset={"uri": "s3://b/d.csv"})
    with pytest.raises(TrainingError) as info:
        parse_spec({"KILN_TRAIN_SPEC": json.dumps(bad)})
    assert info.value.reason is Reason.INVALID_SPEC
    assert "dataset.target" in info.value.message


def test_missing_spec_variable_is_an_invalid_spec() -> None:
    with pytest.raises(TrainingError) as info:
        parse_spec({})
    assert info.value.reason is Reason.INVALID_SPEC


def test_exit_codes_are_distinct_per_reason() -> None:
    codes = [reason.exit_code for reason in Reason]
    assert len(set(codes)) == len(codes)
    assert 0 not in codes
