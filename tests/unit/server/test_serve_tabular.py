"""Tabular models: one typed input per column, errors naming the column, train/serve parity."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.support.tabular import (
    PENGUIN_COLUMNS,
    Trained,
    column_inputs,
    penguins,
    random_penguin_rows,
)

from kiln.server.artifact import deserialise
from kiln.server.predictor import Predictor, build_predictor
from kiln.server.protocol import ProtocolError, parse_infer_request
from kiln.server.service import InferenceService, ServiceSettings

pytestmark = pytest.mark.unit

ESTIMATORS = {
    "logistic": ("sklearn.linear_model.LogisticRegression", {"max_iter": 500}),
    "forest": ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 25}),
    "extra-trees": ("sklearn.ensemble.ExtraTreesClassifier", {"n_estimators": 25}),
    "gradient-boosting": ("sklearn.ensemble.GradientBoostingClassifier", {"n_estimators": 20}),
    "hist-gradient-boosting": ("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 20}),
    "xgboost": ("xgboost.XGBClassifier", {"n_estimators": 20, "max_depth": 3}),
    "lightgbm": ("lightgbm.LGBMClassifier", {"n_estimators": 20}),
}


def trained(key: str = "logistic") -> Trained:
    path, params = ESTIMATORS[key]
    return penguins(path, json.dumps(params, sort_keys=True))


def served(model: Trained) -> Predictor:
    """The predictor kiln-serve builds from the artifact bytes (same trust rules)."""
    return build_predictor(deserialise(model.artifact, "skops", allow_pickle=False))


def body(inputs: list[Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def parse(predictor: Predictor, inputs: list[Any]) -> np.ndarray:
    request = parse_infer_request(body(inputs), predictor.schema, predictor.available_outputs)
    return request.features


def rejected(predictor: Predictor, inputs: list[Any]) -> str:
    with pytest.raises(ProtocolError) as info:
        parse(predictor, inputs)
    assert info.value.status == 400
    return info.value.message


def one_row() -> list[Any]:
    return column_inputs(trained().raw.iloc[:1])


# --- train/serve parity ---------------------------------------------------------------------


@pytest.mark.parametrize("key", list(ESTIMATORS))
def test_served_predictions_equal_the_trainers_own_on_the_same_rows(key: str) -> None:
    model = trained(key)
    predictor = served(model)
    # Every row of the table (11 have gaps) and 300 rows a client might send: values out
    # of range, missing cells, islands and sexes never seen in training.
    rows = pd.concat([model.raw, random_penguin_rows(300, seed=1)], ignore_index=True)
    features = parse(predictor, column_inputs(rows))
    served_labels = predictor.predict(features).values
    np.testing.assert_array_equal(served_labels, model.trainer_predict(rows))
    (probabilities,) = predictor.outputs(features, served_labels, ["predict_proba"])
    np.testing.assert_array_equal(probabilities.values, model.trainer_predict(rows, proba=True))


def test_rows_predicted_one_at_a_time_equal_the_batch() -> None:
    model = trained("forest")
    predictor = served(model)
    rows = random_penguin_rows(40, seed=2)
    batch = predictor.predict(parse(predictor, column_inputs(rows))).values
    single = [predictor.predict(parse(predictor, column_inputs(rows.iloc[[i]]))).values[0]
              for i in range(len(rows))]  # fmt: skip
    assert list(batch) == single


# --- decoding ---------------------------------------------------------------------------------


def test_nulls_are_missing_values_and_numeric_codes_keep_their_text() -> None:
    predictor = served(trained())
    inputs = one_row()
    for tensor in inputs:
        tensor["data"] = [None]
    features = parse(predictor, inputs)
    assert features.dtype == object
    assert all(value != value for value in features[0])  # NaN, the only missing marker
    assert predictor.predict(features).values[0] in ("Adelie", "Chinstrap", "Gentoo")


def test_flat_shapes_and_binary_bytes_are_accepted() -> None:
    predictor = served(trained())
    flat = one_row()
    for tensor in flat:
        tensor["shape"] = [1]
        tensor["data"] = tensor["data"][:1]
    assert parse(predictor, flat)[0, 0] == "Torgersen"
    # Triton binary BYTES: a 4-byte little-endian length before each element.
    island = next(t for t in flat if t["name"] == "island")
    payload = len(b"Dream").to_bytes(4, "little") + b"Dream"
    island.pop("data")
    island["parameters"] = {"binary_data_size": len(payload)}
    header = json.dumps({"inputs": [island, *[t for t in flat if t is not island]]}).encode()
    request = parse_infer_request(
        header + payload, predictor.schema, predictor.available_outputs, len(header)
    )
    assert request.features[0, 0] == "Dream"


def test_missing_column_is_a_400_naming_it() -> None:
    inputs = [t for t in one_row() if t["name"] != "sex"]
    assert "sex" in rejected(served(trained()), inputs)


def test_unknown_column_is_a_400_naming_it() -> None:
    inputs = [*one_row(), {"name": "wingspan", "datatype": "FP64", "shape": [1], "data": [1]}]
    message = rejected(served(trained()), inputs)
    assert "'wingspan'" in message and "island" in message


@pytest.mark.parametrize(
    ("column", "datatype", "data", "fragment"),
    [
        ("island", "FP64", [1.0], "datatype FP64 does not fit categorical column 'island'"),
        ("body_mass_g", "BYTES", ["heavy"], "BYTES does not fit numeric column 'body_mass_g'"),
        ("body_mass_g", "FP64", ["heavy"], "'body_mass_g'"),
        ("island", "BYTES", [3], "'island'"),
        ("body_mass_g", "FP64", [True], "'body_mass_g'"),
        ("year", "INT64", [2007.5], "'year'"),
        ("body_mass_g", "BOOL", [True], "BOOL does not fit numeric column 'body_mass_g'"),
    ],
)
def test_wrong_datatype_or_value_is_a_400_naming_the_column(
    column: str, datatype: str, data: list[Any], fragment: str
) -> None:
    inputs = one_row()
    tensor = next(t for t in inputs if t["name"] == column)
    tensor.update(datatype=datatype, data=data)
    assert fragment in rejected(served(trained()), inputs)


def test_columns_of_different_lengths_are_refused() -> None:
    inputs = column_inputs(trained().raw.iloc[:2])
    inputs[0]["shape"], inputs[0]["data"] = [1, 1], inputs[0]["data"][:1]
    assert "same number of rows" in rejected(served(trained()), inputs)


def test_a_mixed_model_refuses_a_single_number_tensor_naming_its_columns() -> None:
    tensor = {"name": "input-0", "datatype": "FP64", "shape": [1, 7], "data": [0.0] * 7}
    message = rejected(served(trained()), [tensor])
    assert "'input-0'" in message and "island" in message


def numeric_only() -> tuple[Predictor, Any]:
    """An all-numeric tabular pipeline (penguin measurements only, with gaps)."""
    from sklearn.linear_model import LogisticRegression

    from kiln.trainer.artifact import dump_model
    from kiln.trainer.preprocessing import (
        attach_schema,
        build_pipeline,
        canonical_features,
        plan_preparation,
    )

    raw = trained().raw
    columns = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    plan = plan_preparation(raw, columns, "sklearn.linear_model.LogisticRegression", None)
    frame = canonical_features(raw, plan)
    pipeline = build_pipeline(plan, LogisticRegression(max_iter=500)).fit(frame, raw.species)
    attach_schema(pipeline, plan.schema())
    return served_bytes(dump_model(pipeline)), pipeline


def served_bytes(artifact: bytes) -> Predictor:
    return build_predictor(deserialise(artifact, "skops", allow_pickle=False))


def test_all_numeric_model_keeps_the_single_tensor_form_with_nan_for_missing() -> None:
    predictor, pipeline = numeric_only()
    rows = trained().raw[["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]]
    data = [[None if v != v else v for v in row] for row in rows.to_numpy().tolist()]
    tensor = {"name": "input-0", "datatype": "FP64", "shape": [len(rows), 4], "data": data}
    features = parse(predictor, [tensor])
    assert features.dtype == np.float64 and np.isnan(features).sum() == 8
    np.testing.assert_array_equal(predictor.predict(features).values, pipeline.predict(rows))
    named = parse(predictor, column_inputs(rows, tuple(rows.columns)))
    np.testing.assert_array_equal(named, features)


# --- metadata and metrics ---------------------------------------------------------------------


def service_for(predictor: Predictor) -> tuple[InferenceService, list[Callable[[], None]]]:
    scheduled: list[Callable[[], None]] = []
    service = InferenceService(ServiceSettings("penguins", "1", "stable"), scheduled.append)
    service.model_loaded(predictor, "ab" * 32)
    return service, scheduled


def call(service: InferenceService, scheduled: list[Any], method: str, path: str,
         payload: bytes = b"") -> tuple[int, bytes]:  # fmt: skip
    answers: list[tuple[int, bytes]] = []
    service.handle(method, path, {}, payload, lambda s, b, h: answers.append((s, b)), 0.0)
    while scheduled:
        scheduled.pop(0)()
    (answer,) = answers
    return answer


def test_metadata_lists_every_column_with_its_datatype() -> None:
    service, scheduled = service_for(served(trained()))
    status, raw = call(service, scheduled, "GET", "/v2/models/penguins")
    assert status == 200
    inputs = {i["name"]: i for i in json.loads(raw)["inputs"]}
    assert list(inputs) == list(PENGUIN_COLUMNS)
    assert inputs["island"]["datatype"] == "BYTES"
    assert inputs["island"]["parameters"]["categories"] == ["Biscoe", "Dream", "Torgersen"]
    assert inputs["body_mass_g"]["datatype"] == "FP64"
    assert inputs["sex"]["parameters"] == {
        "type": "categorical",
        "nullable": True,
        "categories": ["female", "male"],
    }


def test_unseen_categories_and_missing_values_are_counted_in_metrics() -> None:
    from kiln.server.telemetry import render

    service, scheduled = service_for(served(trained()))
    rows = trained().raw.iloc[:3].copy()
    rows["island"] = ["Atlantis", "Biscoe", "Lemuria"]
    rows.loc[rows.index[0], "body_mass_g"] = None
    status, _ = call(
        service, scheduled, "POST", "/v2/models/penguins/infer", body(column_inputs(rows))
    )
    assert status == 200
    text = render(service).decode()
    labels = 'model="penguins",track="stable",version="1"'
    assert f'kiln_unseen_categories_total{{feature="island",{labels}}} 2.0' in text
    assert f'kiln_missing_values_total{{feature="body_mass_g",{labels}}} 1.0' in text
    # Drift sums leave the missing value out of both the sum and the count.
    assert f'kiln_feature_values_total{{feature="body_mass_g",{labels}}} 2.0' in text
    expected_sum = float(np.nansum(rows["body_mass_g"]))
    assert f'kiln_feature_value_sum{{feature="body_mass_g",{labels}}} {expected_sum}' in text


def test_a_nan_literal_from_pythons_json_is_a_missing_value() -> None:
    predictor = served(trained())
    text = body(one_row()).replace(b"39.1", b"NaN")
    request = parse_infer_request(text, predictor.schema, predictor.available_outputs)
    assert request.features[0, 1] != request.features[0, 1]  # NaN
    infinite = body(one_row()).replace(b"39.1", b"Infinity")
    with pytest.raises(ProtocolError, match="bill_length_mm"):
        parse_infer_request(infinite, predictor.schema, predictor.available_outputs)


@pytest.mark.parametrize(
    ("estimator", "params"),
    [
        ("sklearn.linear_model.Ridge", {}),
        ("sklearn.ensemble.RandomForestRegressor", {"n_estimators": 20}),
        ("sklearn.ensemble.GradientBoostingRegressor", {"n_estimators": 20}),
        ("sklearn.ensemble.HistGradientBoostingRegressor", {"max_iter": 20}),
        ("xgboost.XGBRegressor", {"n_estimators": 20}),
        ("lightgbm.LGBMRegressor", {"n_estimators": 20}),
    ],
)
def test_regressors_are_served_with_the_trainers_own_values(
    estimator: str, params: dict[str, Any]
) -> None:
    # Flipper length from the rest of a penguin (rows without it cannot be a target).
    model = penguins(estimator, json.dumps(params, sort_keys=True), target="flipper_length_mm")
    predictor = served(model)
    assert predictor.fast_path and predictor.predict_datatype == "FP64"
    columns = tuple(c for c in PENGUIN_COLUMNS if c != "flipper_length_mm")
    rows = random_penguin_rows(200, seed=12)
    rows["species"] = ["Adelie", "Gentoo", None, "Chinstrap"] * 50
    features = parse(predictor, column_inputs(rows, ("species", *columns)))
    expected = model.pipeline.predict(_trainer_frame(model, rows))
    np.testing.assert_array_equal(predictor.predict(features).values, expected)


def _trainer_frame(model: Trained, rows: pd.DataFrame) -> Any:
    from kiln.tabular.schema import schema_of
    from kiln.trainer.preprocessing import PreparationPlan, canonical_features

    schema = schema_of(model.pipeline)
    assert schema is not None
    return canonical_features(rows, PreparationPlan(schema.columns, {}, (), ()))


def test_boolean_and_date_columns_and_dropped_ones_are_served() -> None:
    from sklearn.ensemble import RandomForestClassifier

    from kiln.api.preprocessing import PreprocessingSpec
    from kiln.trainer.artifact import dump_model
    from kiln.trainer.preprocessing import (
        attach_schema,
        build_pipeline,
        canonical_features,
        plan_preparation,
        with_categories,
    )

    table = pd.DataFrame(
        {
            "ringed": pd.Series([True, False, None, True] * 10, dtype=object),
            "seen": ["2024-01-31", "2023-07-04", None, "2022-12-25"] * 10,
            "note": ["x", "y", "z", "w"] * 10,
            "y": ["a", "b", "a", "b"] * 10,
        }
    )
    spec = PreprocessingSpec.model_validate(
        {"columns": [{"name": "seen", "type": "datetime"}, {"name": "note", "drop": True}]}
    )
    plan = plan_preparation(table, ["ringed", "seen", "note"], "sklearn.ensemble.X", spec)
    frame = canonical_features(table, plan)
    plan = with_categories(plan, frame)
    pipeline = build_pipeline(plan, RandomForestClassifier(n_estimators=5, random_state=0))
    pipeline.fit(frame, table.y)
    attach_schema(pipeline, plan.schema())
    predictor = served_bytes(dump_model(pipeline))
    dates = ["2024-01-31", None, "2023-07-04"]
    inputs = [
        {"name": "ringed", "datatype": "BOOL", "shape": [3], "data": [True, None, False]},
        {"name": "seen", "datatype": "BYTES", "shape": [3], "data": dates},
        # A column the preparation dropped is known to the model: accepted, ignored.
        {"name": "note", "datatype": "BYTES", "shape": [3], "data": ["ignored", "x", "y"]},
    ]
    features = parse(predictor, inputs)
    rows = pd.DataFrame({"ringed": pd.Series([True, None, False], dtype=object), "seen": dates})
    expected = pipeline.predict(canonical_features(rows, plan))
    np.testing.assert_array_equal(predictor.predict(features).values, expected)
    # A boolean column refuses other numbers, naming itself.
    inputs[0] = {"name": "ringed", "datatype": "INT64", "shape": [3], "data": [1, 2, 0]}
    assert "'ringed'" in rejected(predictor, inputs)


def test_fp32_column_values_are_rounded_as_declared() -> None:
    predictor = served(trained())
    inputs = one_row()
    mass = next(t for t in inputs if t["name"] == "bill_length_mm")
    mass.update(datatype="FP32", data=[[0.1]])
    position = list(PENGUIN_COLUMNS).index("bill_length_mm")
    assert parse(predictor, inputs)[0, position] == float(np.float32(0.1))
