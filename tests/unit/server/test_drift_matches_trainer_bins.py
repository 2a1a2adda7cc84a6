"""kiln-serve counts request values into exactly the bins the trainer measured shares for.

The trainer side runs its own code on a raw table: `plan_preparation` (the column types
it infers, or that spec.preprocessing sets), `canonical_features` (the values the
pipeline is fitted on) and `training_baseline`. The server side gets the SAME raw values
as a JSON request body would carry them (str, int, float, True/False, None) and runs
them through its own path: `parse_infer_request` builds the matrix, `InferenceService`
hands it to `ServingMetrics.observe_rows`, and the compiled `DriftPlan` counts it. Per
feature, the counted shares of the non-missing values must be the baseline's shares and
the missing count must be `missing_rate * rows`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from kiln.api.preprocessing import ColumnPreprocessing, PreprocessingSpec
from kiln.contract.monitoring import MISSING_BIN, Baseline, FeatureProfile, feature_bin
from kiln.server.drift import DriftPlan
from kiln.server.predictor import build_predictor
from kiln.server.protocol import parse_infer_request
from kiln.server.service import InferenceService, ServiceSettings, input_columns
from kiln.trainer.baseline import training_baseline
from kiln.trainer.metrics import Predictions
from kiln.trainer.preprocessing import (
    attach_schema,
    build_pipeline,
    canonical_features,
    plan_preparation,
)

pytestmark = pytest.mark.unit

ROWS = 64
CITIES = [f"city-{chr(ord('a') + i)}" for i in range(13)]  # more than TOP_CATEGORIES


def _raw_columns() -> dict[str, list[Any]]:
    """Raw training values, as a request (decoded JSON) would carry them."""
    amount: list[Any] = []
    flat: list[Any] = []
    city: list[Any] = []
    member: list[Any] = []
    code: list[Any] = []
    grade: list[Any] = []
    for i in range(ROWS):
        # Repeats (each value several times), values on the bin edges, integers and
        # non-integral floats, and missing values.
        amount.append(
            None if i % 9 == 4 else [1, 2, 2, 3.5, 3.5, 3.5, 10, 12.25, -4, 0][i % 10] + i // 10 * 7
        )
        flat.append(7.0)
        # Skewed frequencies so the top 10 are not all tied; a few missing.
        city.append(None if i % 11 == 3 else CITIES[(i * i + i // 3) % len(CITIES)])
        member.append(None if i % 7 == 2 else (i % 3 != 0))
        code.append([1, 2, 3, 2, 1, 1][i % 6])  # int codes, declared categorical
        grade.append(None if i % 8 == 5 else [1.0, 2.0, 2.5, 3.0][i % 4])  # float codes
    return {
        "amount": amount,
        "flat": flat,
        "city": city,
        "member": member,
        "code": code,
        "grade": grade,
    }


def _training_frame(raw: dict[str, list[Any]]) -> pd.DataFrame:
    """The table as the trainer's loader would hold it (pandas dtypes of such a table)."""
    return pd.DataFrame(
        {
            "amount": pd.Series(raw["amount"], dtype="float64"),
            "flat": pd.Series(raw["flat"], dtype="float64"),
            "city": pd.Series(raw["city"], dtype=object),
            "member": pd.Series(raw["member"], dtype=object),  # bool with empty cells
            "code": pd.Series(raw["code"], dtype="int64"),
            "grade": pd.Series(raw["grade"], dtype="float64"),
            "label": pd.Series([i % 2 for i in range(ROWS)], dtype="int64"),
        }
    )


DATATYPES = {
    "amount": "FP64",
    "flat": "FP64",
    "city": "BYTES",
    "member": "BOOL",
    "code": "INT64",
    "grade": "FP64",
}


def _body(raw: dict[str, list[Any]], names: tuple[str, ...]) -> bytes:
    inputs = [
        {"name": n, "datatype": DATATYPES[n], "shape": [len(raw[n])], "data": raw[n]} for n in names
    ]
    return orjson.dumps({"inputs": inputs})


def _fake_predictions(classes: list[Any]) -> Predictions:
    y = np.array([classes[i % len(classes)] for i in range(10)])
    return Predictions(y_true=y, y_pred=y, classes=classes)


class _Service:
    """An InferenceService whose loop turns are run by hand."""

    def __init__(self) -> None:
        self.scheduled: list[Callable[[], None]] = []
        self.service = InferenceService(ServiceSettings("m", "1", "stable"), self.scheduled.append)

    def infer(self, body: bytes) -> None:
        answers: list[int] = []
        self.service.handle(
            "POST", "/v2/models/m/infer", {}, body, lambda s, b, h: answers.append(s), 0.0
        )
        while self.scheduled:
            callbacks, self.scheduled[:] = list(self.scheduled), []
            for callback in callbacks:
                callback()
        assert answers == [200]

    def counts(self) -> dict[str, dict[str, int]]:
        plan = self.service.drift_plan()
        assert plan is not None
        bins = self.service.metrics.snapshot().feature_bins
        return {
            f.name: dict(zip(f.bins, row, strict=True))
            for f, row in zip(plan.features, bins, strict=True)
        }


def _assert_counts_match(baseline: Baseline, counts: dict[str, dict[str, int]]) -> None:
    assert set(counts) == {f.name for f in baseline.features if f.distribution.shares}
    for profile in baseline.features:
        if profile.name not in counts:
            continue
        counted = counts[profile.name]
        missing = counted[MISSING_BIN]
        present = sum(counted.values()) - missing
        assert sum(counted.values()) == baseline.rows, profile.name
        assert missing == round(profile.missing_rate * baseline.rows), profile.name
        assert present == profile.distribution.count, profile.name
        labels = profile.distribution.bin_labels()
        # Every bin the server has beyond the baseline's (OTHER_BIN for a cut-free
        # category list) stays empty: no value lands where the trainer measured nothing.
        for extra in set(counted) - set(labels) - {MISSING_BIN}:
            assert counted[extra] == 0, (profile.name, extra)
        shares = [counted[label] / present for label in labels]
        assert shares == pytest.approx(profile.distribution.shares, abs=1e-5), profile.name


def _contract_counts(profile: FeatureProfile, values: list[Any]) -> dict[str, int]:
    counted: dict[str, int] = {}
    for value in values:
        label = feature_bin(profile, value)
        key = MISSING_BIN if label is None else label
        counted[key] = counted.get(key, 0) + 1
    return counted


def test_a_mixed_type_tabular_model_counts_the_trainers_bins() -> None:
    raw = _raw_columns()
    frame = _training_frame(raw)
    features = ["amount", "flat", "city", "member", "code", "grade"]
    spec = PreprocessingSpec(
        columns=[
            ColumnPreprocessing(name="code", type="categorical"),
            ColumnPreprocessing(name="grade", type="categorical"),
        ]
    )
    plan = plan_preparation(frame, features, "sklearn.tree.DecisionTreeClassifier", spec)
    kinds = {c.name: c.kind for c in plan.columns}
    assert kinds == {
        "amount": "numeric",
        "flat": "numeric",
        "city": "categorical",
        "member": "boolean",
        "code": "categorical",
        "grade": "categorical",
    }
    x_train = canonical_features(frame, plan)
    baseline = training_baseline(plan.columns, x_train, _fake_predictions([0, 1]), True)
    # The profile holds what the cases are about.
    city = baseline.feature("city")
    assert city is not None and city.distribution.labels is not None
    assert city.distribution.labels[-1] == "__other__" and city.missing_rate > 0
    flat = baseline.feature("flat")
    assert flat is not None and flat.distribution.edges == []
    assert baseline.feature("code").distribution.labels == ["1", "2", "3"]  # type: ignore[union-attr]
    assert set(baseline.feature("grade").distribution.labels or []) == {"1", "2", "2.5", "3"}  # type: ignore[union-attr]
    assert set(baseline.feature("member").distribution.labels or []) == {"True", "False"}  # type: ignore[union-attr]

    pipeline = build_pipeline(plan, DecisionTreeClassifier(random_state=0))
    pipeline.fit(x_train, frame["label"])
    attach_schema(pipeline, plan.schema())
    predictor = build_predictor(pipeline)
    names, _ = input_columns(predictor)
    assert names == tuple(features)

    # The matrix service.py hands to observe_rows is the parsed request's matrix.
    body = _body(raw, names)
    matrix = parse_infer_request(body, predictor.schema, predictor.available_outputs).features
    assert matrix.dtype == object
    harness = _Service()
    harness.service.model_loaded(predictor, "ab" * 32, baseline)
    harness.infer(body)
    counts = harness.counts()
    _assert_counts_match(baseline, counts)
    # The cases are not trivial: many numeric bins, cut categories, missing values.
    assert sum(1 for v in counts["amount"].values() if v) > 5
    assert counts["amount"][MISSING_BIN] > 0
    assert counts["city"]["__other__"] > 0 and counts["city"][MISSING_BIN] > 0
    assert counts["member"][MISSING_BIN] > 0 and counts["grade"][MISSING_BIN] > 0

    # And per value, the server's bins are contract.feature_bin's on the raw JSON values.
    for profile in baseline.features:
        expected = _contract_counts(profile, raw[profile.name])
        assert {k: v for k, v in counts[profile.name].items() if v} == expected, profile.name

    # Counting the matrix directly with the compiled plan gives the same numbers.
    plan_ = harness.service.drift_plan()
    assert isinstance(plan_, DriftPlan)
    direct = plan_.count_features(matrix)
    assert [list(c) for c in direct] == harness.service.metrics.snapshot().feature_bins


def test_request_spellings_of_one_value_land_in_one_bin() -> None:
    """A code sent as 2 / 2.0 (numbers) and a boolean as true / 1 count alike."""
    raw = _raw_columns()
    frame = _training_frame(raw)
    features = ["amount", "flat", "city", "member", "code", "grade"]
    spec = PreprocessingSpec(
        columns=[
            ColumnPreprocessing(name="code", type="categorical"),
            ColumnPreprocessing(name="grade", type="categorical"),
        ]
    )
    plan = plan_preparation(frame, features, "sklearn.tree.DecisionTreeClassifier", spec)
    x_train = canonical_features(frame, plan)
    baseline = training_baseline(plan.columns, x_train, _fake_predictions([0, 1]), True)
    pipeline = build_pipeline(plan, DecisionTreeClassifier(random_state=0))
    pipeline.fit(x_train, frame["label"])
    attach_schema(pipeline, plan.schema())
    predictor = build_predictor(pipeline)
    names, _ = input_columns(predictor)
    respelled = dict(raw)
    respelled["code"] = [float(v) for v in raw["code"]]  # FP64 2.0 for INT64 2
    respelled["member"] = [None if v is None else int(v) for v in raw["member"]]
    inputs = [
        {
            "name": n,
            "datatype": {"code": "FP64", "member": "INT64"}.get(n, DATATYPES[n]),
            "shape": [ROWS],
            "data": respelled[n],
        }
        for n in names
    ]
    harness = _Service()
    harness.service.model_loaded(predictor, "ab" * 32, baseline)
    harness.infer(orjson.dumps({"inputs": inputs}))
    _assert_counts_match(baseline, harness.counts())


def _iris_like() -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(7)
    names = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    values = np.round(rng.normal([5.8, 3.0, 3.7, 1.2], [0.8, 0.4, 1.7, 0.7], (150, 4)), 1)
    frame = pd.DataFrame(values, columns=names)
    frame["species"] = [i % 3 for i in range(150)]
    return frame, names


def test_a_plain_numeric_model_counts_the_trainers_bins() -> None:
    """A bare estimator: the request is a float64 [N, 4] matrix, features named by the
    ModelVersion's input schema."""
    frame, names = _iris_like()
    plan = plan_preparation(frame, names, "sklearn.linear_model.LogisticRegression", None)
    assert all(c.kind == "numeric" for c in plan.columns)
    x_train = canonical_features(frame, plan)
    baseline = training_baseline(plan.columns, x_train, _fake_predictions([0, 1, 2]), True)
    assert all(len(f.distribution.shares) > 1 for f in baseline.features)

    estimator = LogisticRegression(max_iter=500).fit(frame[names].to_numpy(), frame["species"])
    predictor = build_predictor(estimator, tuple(names))
    assert predictor.tabular is None
    assert input_columns(predictor) == (tuple(names), None)
    rows = frame[names].to_numpy().tolist()  # JSON numbers
    body = orjson.dumps(
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [150, 4], "data": rows}]}
    )
    matrix = parse_infer_request(body, predictor.schema, predictor.available_outputs).features
    assert matrix.dtype == np.float64
    harness = _Service()
    harness.service.model_loaded(predictor, "ab" * 32, baseline)
    harness.infer(body)
    _assert_counts_match(baseline, harness.counts())


def test_a_kiln_trained_all_numeric_model_counts_the_trainers_bins() -> None:
    """The same columns through a Kiln pipeline: an all-numeric float matrix, NaN missing."""
    frame, names = _iris_like()
    frame.loc[::13, names[1]] = math.nan
    plan = plan_preparation(frame, names, "sklearn.linear_model.LogisticRegression", None)
    x_train = canonical_features(frame, plan)
    baseline = training_baseline(plan.columns, x_train, _fake_predictions([0, 1, 2]), True)
    pipeline = build_pipeline(plan, LogisticRegression(max_iter=500))
    pipeline.fit(x_train, frame["species"])
    attach_schema(pipeline, plan.schema())
    predictor = build_predictor(pipeline)
    rows = [[None if math.isnan(v) else v for v in row] for row in frame[names].to_numpy().tolist()]
    body = orjson.dumps(
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [150, 4], "data": rows}]}
    )
    matrix = parse_infer_request(body, predictor.schema, predictor.available_outputs).features
    assert matrix.dtype == np.float64
    harness = _Service()
    harness.service.model_loaded(predictor, "ab" * 32, baseline)
    harness.infer(body)
    _assert_counts_match(baseline, harness.counts())
