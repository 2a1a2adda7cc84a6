"""The trainer in-process on a real mixed-type table with missing values (Palmer penguins)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import skops.io as sio

from kiln.tabular.schema import schema_of
from kiln.trainer.logs import EventLog
from kiln.trainer.main import run_trainer

pytestmark = pytest.mark.component

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"
PENGUINS = EXAMPLES / "penguins.csv"


def train(spec: dict[str, Any], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    termination_log = tmp_path / "termination-log"
    env = {"KILN_TRAIN_SPEC": json.dumps(spec), "KILN_TERMINATION_LOG": str(termination_log)}
    code = run_trainer(env, EventLog(io.StringIO()))
    return code, json.loads(termination_log.read_bytes())


def penguins_spec(output: Path, estimator: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": "penguins",
        "estimator": estimator,
        "dataset": {"uri": PENGUINS.as_uri(), "target": "species"},
        "evaluation": {"testSize": 0.25, "seed": 7},
        "output": {"uri": output.as_uri()},
        "run": {"namespace": "ml", "trainingJob": "penguins", "number": 1},
    }
    spec.update(overrides)
    return spec


def load_model(report: dict[str, Any]) -> Any:
    data = Path(report["artifact"]["uri"].removeprefix("file://")).read_bytes()
    assert hashlib.sha256(data).hexdigest() == report["artifact"]["sha256"]
    return sio.loads(data, trusted=sio.get_untrusted_types(data=data))


def test_shipped_penguins_csv_is_the_palmerpenguins_packages_file() -> None:
    palmerpenguins = pytest.importorskip("palmerpenguins")
    shipped = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"
    assert PENGUINS.read_bytes() == shipped.read_bytes()


@pytest.mark.parametrize(
    ("estimator", "params"),
    [
        ("sklearn.linear_model.LogisticRegression", {"max_iter": 500}),
        ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 30}),
        ("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 30}),
        ("xgboost.XGBClassifier", {"n_estimators": 30, "max_depth": 3}),
        ("lightgbm.LGBMClassifier", {"n_estimators": 30}),
    ],
)
def test_mixed_types_with_missing_values_train_without_any_settings(
    tmp_path: Path, estimator: str, params: dict[str, Any]
) -> None:
    code, report = train(penguins_spec(tmp_path / "out", estimator, params=params), tmp_path)
    assert code == 0, report
    assert report["metrics"]["accuracy"] >= 0.9
    features = {f["name"]: f for f in report["inputSchema"]["features"]}
    assert list(features) == [
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
    ]
    assert features["island"]["type"] == "categorical"
    assert features["island"]["categories"] == ["Biscoe", "Dream", "Torgersen"]
    assert features["sex"]["nullable"] is True and features["sex"]["categories"] == [
        "female",
        "male",
    ]
    assert features["body_mass_g"]["type"] == "numeric" and features["body_mass_g"]["nullable"]
    assert report["inputSchema"]["classes"] == ["Adelie", "Chinstrap", "Gentoo"]

    # One artifact holds preparation + estimator, and predicts raw rows with gaps.
    model = load_model(report)
    schema = schema_of(model)
    assert schema is not None and schema.names == tuple(features)
    raw = pd.read_csv(PENGUINS)
    from kiln.tabular.coerce import canonical_frame

    rows = canonical_frame(schema, {name: raw[name].tolist() for name in schema.names})
    predicted = model.predict(rows)
    assert set(predicted) <= {"Adelie", "Chinstrap", "Gentoo"}
    assert (predicted == raw["species"].to_numpy()).mean() >= 0.9


@pytest.mark.parametrize(
    "estimator", ["xgboost.XGBClassifier", "lightgbm.LGBMClassifier", "xgboost.XGBRegressor"]
)
def test_boosting_models_are_byte_reproducible(tmp_path: Path, estimator: str) -> None:
    overrides: dict[str, Any] = {"params": {"n_estimators": 20}}
    if estimator.endswith("Regressor"):
        overrides["dataset"] = {"uri": (EXAMPLES / "diabetes.csv").as_uri(), "target": "target"}
    first = train(penguins_spec(tmp_path / "a", estimator, **overrides), tmp_path)
    second = train(penguins_spec(tmp_path / "b", estimator, **overrides), tmp_path)
    assert first[0] == second[0] == 0, first
    assert first[1]["artifact"]["sha256"] == second[1]["artifact"]["sha256"]
    assert first[1]["metrics"] == second[1]["metrics"]
    assert first[1]["baseline"]["sha256"] == second[1]["baseline"]["sha256"]


def test_regression_target_with_missing_values_is_refused_naming_it(tmp_path: Path) -> None:
    spec = penguins_spec(
        tmp_path / "out",
        "sklearn.linear_model.Ridge",
        dataset={"uri": PENGUINS.as_uri(), "target": "body_mass_g"},
    )
    code, report = train(spec, tmp_path)
    assert (code, report["reason"]) == (5, "InvalidDataset")
    assert "'body_mass_g'" in report["message"]


def test_overrides_are_applied_and_recorded(tmp_path: Path) -> None:
    preprocessing = {
        "dropDuplicateRows": True,
        "columns": [
            {"name": "year", "type": "categorical"},
            {"name": "island", "drop": True},
            {"name": "sex", "impute": "constant", "fillValue": "unknown", "encoder": "onehot"},
        ],
    }
    spec = penguins_spec(
        tmp_path / "out",
        "sklearn.ensemble.RandomForestClassifier",
        params={"n_estimators": 10},
        preprocessing=preprocessing,
    )
    code, report = train(spec, tmp_path)
    assert code == 0, report
    features = {f["name"]: f for f in report["inputSchema"]["features"]}
    assert "island" not in features and report["inputSchema"]["dropped"] == ["island"]
    assert features["year"]["type"] == "categorical"
    assert features["year"]["categories"] == ["2007", "2008", "2009"]
    assert (features["sex"]["impute"], features["sex"]["fillValue"]) == ("constant", "unknown")
    assert features["sex"]["encoder"] == "onehot"
    assert report["split"]["duplicateRowsDropped"] == 0


def test_duplicate_rows_are_dropped_before_the_split(tmp_path: Path) -> None:
    doubled = tmp_path / "doubled.csv"
    frame = pd.read_csv(PENGUINS)
    pd.concat([frame, frame.iloc[:40]]).to_csv(doubled, index=False)
    spec = penguins_spec(
        tmp_path / "out",
        "sklearn.linear_model.LogisticRegression",
        dataset={"uri": doubled.as_uri(), "target": "species"},
        preprocessing={"dropDuplicateRows": True},
    )
    code, report = train(spec, tmp_path)
    assert code == 0, report
    assert report["split"]["duplicateRowsDropped"] == 40
    assert report["split"]["trainRows"] + report["split"]["testRows"] == len(frame)


def test_data_dependent_mistake_fails_the_run_naming_the_column(tmp_path: Path) -> None:
    spec = penguins_spec(
        tmp_path / "out",
        "sklearn.linear_model.LogisticRegression",
        preprocessing={"columns": [{"name": "island", "impute": "median"}]},
    )
    code, report = train(spec, tmp_path)
    assert (code, report["reason"]) == (2, "InvalidSpec")
    assert "island" in report["message"]


def test_the_penguins_example_trains_as_written_and_serves_its_request(tmp_path: Path) -> None:
    import yaml

    from kiln.server.artifact import load_artifact
    from kiln.server.predictor import build_predictor
    from kiln.server.protocol import parse_infer_request

    example = EXAMPLES.parent / "penguins"
    job = yaml.safe_load((example / "trainingjob.yaml").read_text())["spec"]
    spec = penguins_spec(
        tmp_path / "out",
        job["estimator"],
        params=job["params"],
        dataset={**job["dataset"], "uri": PENGUINS.as_uri()},
        preprocessing=job["preprocessing"],
        evaluation=job["evaluation"],
    )
    code, report = train(spec, tmp_path)
    assert code == 0, report
    assert report["metrics"]["accuracy"] >= job["registration"]["thresholds"][0]["min"]
    artifact = load_artifact(report["artifact"]["uri"], report["artifact"]["sha256"])
    predictor = build_predictor(artifact.estimator)
    request = parse_infer_request(
        (example / "request.json").read_bytes(), predictor.schema, predictor.available_outputs
    )
    # The three rows are a Gentoo, a Chinstrap and an Adelie from the table.
    assert list(predictor.predict(request.features).values) == ["Gentoo", "Chinstrap", "Adelie"]


def test_a_sensitive_column_listed_as_a_feature_can_be_prepared(tmp_path: Path) -> None:
    diabetes = EXAMPLES / "diabetes.csv"
    columns = list(pd.read_csv(diabetes).columns)
    spec = penguins_spec(
        tmp_path / "out",
        "sklearn.ensemble.RandomForestRegressor",
        params={"n_estimators": 10},
        dataset={
            "uri": diabetes.as_uri(),
            "target": "target",
            "sensitiveColumn": "sex",
            "features": [c for c in columns if c != "target"],
        },
        preprocessing={"columns": [{"name": "sex", "type": "categorical"}]},
    )
    code, report = train(spec, tmp_path)
    assert code == 0, report
    sex = next(f for f in report["inputSchema"]["features"] if f["name"] == "sex")
    assert sex["type"] == "categorical" and sex["categories"] == ["1", "2"]
    assert report["fairness"]["column"] == "sex"
