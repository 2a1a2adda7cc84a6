"""Kiln pipelines fitted on the shipped penguins table, exactly as kiln-train builds them."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kiln.tabular.transforms import EncodedLabelClassifier
from kiln.trainer.artifact import dump_model
from kiln.trainer.estimators import prepare_estimator
from kiln.trainer.preprocessing import (
    attach_schema,
    build_pipeline,
    canonical_features,
    plan_preparation,
    with_categories,
)

PENGUINS = Path(__file__).resolve().parents[2] / "examples" / "data" / "penguins.csv"
PENGUIN_COLUMNS = (
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
    "year",
)
NUMERIC_COLUMNS = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")


@dataclass(frozen=True)
class Trained:
    pipeline: Any
    artifact: bytes
    raw: pd.DataFrame  # the table as read from the CSV

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.artifact).hexdigest()

    def trainer_predict(self, raw: pd.DataFrame, proba: bool = False) -> np.ndarray:
        """What the trainer's fitted pipeline says about raw rows (its own code path)."""
        from kiln.tabular.schema import schema_of

        schema = schema_of(self.pipeline)
        assert schema is not None
        from kiln.trainer.preprocessing import PreparationPlan

        plan = PreparationPlan(schema.columns, {}, schema.dropped, ())
        frame = canonical_features(raw, plan)
        method = self.pipeline.predict_proba if proba else self.pipeline.predict
        return np.asarray(method(frame))


@functools.cache
def penguins(estimator: str, params_json: str = "{}", target: str = "species") -> Trained:
    """Fitted once per session per estimator; callers must not mutate the result."""
    raw = pd.read_csv(PENGUINS)
    table = raw[raw[target].notna()]
    features = [c for c in table.columns if c != target]
    prepared = prepare_estimator(estimator, json.loads(params_json), 7)
    plan = plan_preparation(table, features, estimator, None, protected=[target])
    frame = canonical_features(table, plan)
    plan = with_categories(plan, frame)
    step = (
        EncodedLabelClassifier(prepared.estimator) if prepared.encode_labels else prepared.estimator
    )
    pipeline = build_pipeline(plan, step).fit(frame, table[target])
    attach_schema(pipeline, plan.schema())
    return Trained(pipeline, dump_model(pipeline), raw)


def json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def column_inputs(rows: pd.DataFrame, columns: tuple[str, ...] = PENGUIN_COLUMNS) -> list[Any]:
    """OIP v2 inputs, one per column, as MLServer's pandas codec or tritonclient send them."""
    inputs = []
    for name in columns:
        series = rows[name]
        numeric = pd.api.types.is_numeric_dtype(series.dtype)
        integer = pd.api.types.is_integer_dtype(series.dtype)
        inputs.append(
            {
                "name": name,
                "datatype": "INT64" if integer else "FP64" if numeric else "BYTES",
                "shape": [len(rows), 1],
                "data": [json_value(v) for v in series.tolist()],
            }
        )
    return inputs


def random_penguin_rows(count: int, seed: int) -> pd.DataFrame:
    """Rows a client might send: ranges beyond training, gaps, unseen islands."""
    rng = np.random.default_rng(seed)
    islands = np.array(["Biscoe", "Dream", "Torgersen", "Atlantis", None], dtype=object)
    sexes = np.array(["male", "female", None, "unknown"], dtype=object)

    def numbers(low: float, high: float) -> list[Any]:
        values = rng.uniform(low, high, count).round(1)
        return [None if rng.random() < 0.1 else float(v) for v in values]

    return pd.DataFrame(
        {
            "island": pd.Series(islands[rng.integers(0, len(islands), count)], dtype=object),
            "bill_length_mm": numbers(25, 65),
            "bill_depth_mm": numbers(10, 25),
            "flipper_length_mm": numbers(160, 240),
            "body_mass_g": numbers(2500, 6500),
            "sex": pd.Series(sexes[rng.integers(0, len(sexes), count)], dtype=object),
            "year": rng.integers(2005, 2012, count),
        }
    )
