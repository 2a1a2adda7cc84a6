"""kiln-train end to end: a real process, a real S3 (SeaweedFS on loopback), real files."""

import hashlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from tests.support.s3 import SeaweedS3

from kiln.api.model_version import BaselineReference
from kiln.store import ObjectStore
from kiln.store.baseline import read_baseline
from kiln.trainer.logs import EventLog
from kiln.trainer.main import run_trainer

pytestmark = pytest.mark.component

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"
IRIS = EXAMPLES / "iris.csv"
KILN_TRAIN = Path(sys.executable).parent / "kiln-train"


@dataclass
class Outcome:
    exit_code: int
    report: dict[str, Any]
    stdout: str


def run_kiln_train(spec: dict[str, Any], env: dict[str, str], workdir: Path) -> Outcome:
    termination_log = workdir / f"termination-{len(list(workdir.iterdir()))}.json"
    completed = subprocess.run(
        [str(KILN_TRAIN)],
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(workdir),
            **env,
            "KILN_TRAIN_SPEC": json.dumps(spec),
            "KILN_TERMINATION_LOG": str(termination_log),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Outcome(completed.returncode, json.loads(termination_log.read_bytes()), completed.stdout)


def iris_spec(run: int, **dataset: Any) -> dict[str, Any]:
    return {
        "model": "iris",
        "estimator": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 30, "max_depth": 4},
        "dataset": {"uri": "s3://datasets/iris.csv", "target": "species", **dataset},
        "evaluation": {"testSize": 0.3, "seed": 11},
        "output": {"uri": "s3://models/kiln"},
        "run": {"namespace": "ml", "trainingJob": "iris-train", "number": run},
    }


@pytest.fixture(scope="module")
def s3(seaweedfs_s3: SeaweedS3) -> SeaweedS3:
    client = seaweedfs_s3.client()
    for bucket in ("datasets", "models"):
        seaweedfs_s3.create_bucket(bucket)
    client.put_object(Bucket="datasets", Key="iris.csv", Body=IRIS.read_bytes())
    client.put_object(
        Bucket="datasets", Key="broken.csv", Body=(EXAMPLES / "iris-broken.csv").read_bytes()
    )
    return seaweedfs_s3


@pytest.fixture(scope="module")
def two_runs(s3: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    workdir = tmp_path_factory.mktemp("kiln-train")
    return [run_kiln_train(iris_spec(run), s3.env(), workdir) for run in (1, 2)]


def _object(s3: SeaweedS3, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def _predict(model_bytes: bytes) -> np.ndarray:
    model = sio.loads(model_bytes, trusted=sio.get_untrusted_types(data=model_bytes))
    frame = pd.read_csv(IRIS)
    return np.asarray(model.predict(frame.drop(columns=["species"])))


def test_trains_from_s3_and_uploads_an_artifact_whose_sha256_matches(
    s3: SeaweedS3, two_runs: list[Outcome]
) -> None:
    first = two_runs[0]
    assert first.exit_code == 0, first.report
    report = first.report
    assert report["ok"] is True
    artifact = report["artifact"]
    assert artifact["uri"] == "s3://models/kiln/ml/iris-train/run-1/model.skops"
    assert artifact["format"] == "skops"
    stored = _object(s3, artifact["uri"])
    assert hashlib.sha256(stored).hexdigest() == artifact["sha256"]
    assert len(stored) == artifact["sizeBytes"]
    assert report["dataset"] == {
        "uri": "s3://datasets/iris.csv",
        "sha256": hashlib.sha256(IRIS.read_bytes()).hexdigest(),
        "rows": 150,
    }
    assert report["metrics"]["accuracy"] > 0.85
    assert set(report["metrics"]) == {
        "accuracy",
        "f1_macro",
        "precision_macro",
        "recall_macro",
        "roc_auc",
        "log_loss",
    }
    assert report["inputSchema"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert [f["name"] for f in report["inputSchema"]["features"]] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert set(report["versions"]) >= {"python", "sklearn", "skops", "numpy", "pandas"}
    assert set(report["durationSeconds"]) == {"load", "fit", "evaluate", "upload"}
    full_report = json.loads(_object(s3, report["reportUri"]))
    assert full_report["artifact"] == artifact
    # The baseline next to the model, verified and readable with the shared reader.
    reference = BaselineReference.model_validate(report["baseline"])
    assert reference.uri == "s3://models/kiln/ml/iris-train/run-1/baseline.json"
    baseline = read_baseline(ObjectStore(env=s3.env()), reference)
    assert [f.name for f in baseline.features] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert all(f.kind == "numeric" and f.distribution.count > 0 for f in baseline.features)
    assert baseline.rows == report["split"]["trainRows"]
    assert baseline.predictions is not None and baseline.labels is not None
    assert baseline.predictions.labels == ["setosa", "versicolor", "virginica"]
    assert baseline.predictions.count == report["split"]["testRows"]
    predictions = _predict(stored)
    assert set(predictions) <= {"setosa", "versicolor", "virginica"}
    phases = [json.loads(line).get("phase") for line in first.stdout.splitlines()]
    assert {"load", "fit", "evaluate", "upload"} <= set(phases)


def test_same_inputs_give_the_same_metrics_predictions_and_bytes(
    s3: SeaweedS3, two_runs: list[Outcome]
) -> None:
    first, second = (outcome.report for outcome in two_runs)
    assert second["ok"] is True
    assert second["artifact"]["uri"].endswith("/run-2/model.skops")
    assert first["metrics"] == second["metrics"]
    first_model = _object(s3, first["artifact"]["uri"])
    second_model = _object(s3, second["artifact"]["uri"])
    np.testing.assert_array_equal(_predict(first_model), _predict(second_model))
    # Canonical skops archives: separate processes produce byte-identical models.
    assert first["artifact"]["sha256"] == second["artifact"]["sha256"]
    # And byte-identical baselines.
    assert second["baseline"]["uri"].endswith("/run-2/baseline.json")
    assert first["baseline"]["sha256"] == second["baseline"]["sha256"]


def test_wrong_credentials_are_dataset_unavailable(s3: SeaweedS3, tmp_path: Path) -> None:
    env = {**s3.env(), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    outcome = run_kiln_train(iris_spec(3), env, tmp_path)
    assert outcome.exit_code == 3
    assert outcome.report["reason"] == "DatasetUnavailable"
    assert outcome.report["ok"] is False and outcome.report["retryable"] is True


def test_pinned_digest_mismatch_fails_with_integrity_error(s3: SeaweedS3, tmp_path: Path) -> None:
    outcome = run_kiln_train(iris_spec(4, sha256="f" * 64), s3.env(), tmp_path)
    assert (outcome.exit_code, outcome.report["reason"]) == (4, "IntegrityError")
    assert outcome.report["retryable"] is False


def test_broken_dataset_and_mistyped_param_fail_with_their_reasons(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    broken = iris_spec(5, uri="s3://datasets/broken.csv")
    outcome = run_kiln_train(broken, s3.env(), tmp_path)
    assert (outcome.exit_code, outcome.report["reason"]) == (5, "InvalidDataset")

    typo = {**iris_spec(6), "params": {"n_estimator": 30}}
    outcome = run_kiln_train(typo, s3.env(), tmp_path)
    assert (outcome.exit_code, outcome.report["reason"]) == (7, "InvalidParams")
    assert "did you mean 'n_estimators'?" in outcome.report["message"]
    listing = s3.client().list_objects_v2(Bucket="models", Prefix="kiln/ml/iris-train/run-6/")
    assert listing.get("KeyCount", 0) == 0  # nothing uploaded for a failed run


def _train_in_process(spec: dict[str, Any], env: dict[str, str], tmp_path: Path) -> Outcome:
    log = tmp_path / "termination-log"
    code = run_trainer(
        {**env, "KILN_TRAIN_SPEC": json.dumps(spec), "KILN_TERMINATION_LOG": str(log)},
        EventLog(io.StringIO()),
    )
    return Outcome(code, json.loads(log.read_bytes()), "")


def test_unwritable_output_is_a_retryable_upload_failure(s3: SeaweedS3, tmp_path: Path) -> None:
    # (SeaweedFS creates a missing bucket on PUT, so the unwritable target is a path
    # below a regular file.)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    spec = {**iris_spec(7), "output": {"uri": (blocker / "models").as_uri()}}
    outcome = _train_in_process(spec, s3.env(), tmp_path)
    assert (outcome.exit_code, outcome.report["reason"]) == (9, "UploadFailed")
    assert outcome.report["retryable"] is True


def test_empty_cells_are_imputed_and_kept_nan_needs_an_estimator_that_takes_it(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    frame = pd.read_csv(IRIS)
    frame.loc[3, "petal_width"] = float("nan")
    s3.client().put_object(Bucket="datasets", Key="holes.csv", Body=frame.to_csv(index=False))
    spec = {
        **iris_spec(8, uri="s3://datasets/holes.csv"),
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {},
    }
    outcome = _train_in_process(spec, s3.env(), tmp_path)
    assert outcome.exit_code == 0, outcome.report
    # Told to keep NaN, LogisticRegression (no allow_nan tag) is refused before fitting.
    kept = {**spec, "preprocessing": {"numeric": {"impute": "none"}}}
    outcome = _train_in_process(kept, s3.env(), tmp_path)
    assert (outcome.exit_code, outcome.report["reason"]) == (2, "InvalidSpec")
    message = outcome.report["message"]
    assert message.startswith("spec.preprocessing.numeric: impute: none"), message
    assert "'petal_width'" in message
    assert "LogisticRegression does not accept missing values" in message
    # An estimator that takes NaN trains on the same kept gaps.
    forest = {**kept, "estimator": "sklearn.ensemble.HistGradientBoostingClassifier"}
    outcome = _train_in_process(forest, s3.env(), tmp_path)
    assert outcome.exit_code == 0, outcome.report
