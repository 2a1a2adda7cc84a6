import io
import zipfile

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

from kiln.api.preprocessing import PreprocessingSpec
from kiln.trainer.artifact import FIXED_ZIP_TIME, dump_model, input_schema
from kiln.trainer.preprocessing import (
    build_pipeline,
    canonical_features,
    plan_preparation,
    with_categories,
)

pytestmark = pytest.mark.unit


def _fit(cls: type) -> object:
    x, y = load_iris(return_X_y=True)
    return cls(random_state=0).fit(x, y)


@pytest.mark.parametrize("cls", [RandomForestClassifier, HistGradientBoostingClassifier])
def test_same_model_gives_the_same_bytes(cls: type) -> None:
    first, second = _fit(cls), _fit(cls)
    # skops alone names files after id(): two equal models give different archives.
    assert sio.dumps(first) != sio.dumps(second)
    assert dump_model(first) == dump_model(second)


def test_canonical_archive_loads_and_predicts_like_the_original() -> None:
    model = _fit(RandomForestClassifier)
    data = dump_model(model)
    loaded = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    x, _ = load_iris(return_X_y=True)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))  # type: ignore[attr-defined]
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))  # type: ignore[attr-defined]


def test_archive_entries_carry_a_fixed_timestamp() -> None:
    with zipfile.ZipFile(io.BytesIO(dump_model(_fit(RandomForestClassifier)))) as archive:
        assert {info.date_time for info in archive.infolist()} == {FIXED_ZIP_TIME}
        assert archive.testzip() is None


def test_input_schema_lists_every_column_with_type_missing_and_categories() -> None:
    frame = pd.DataFrame(
        {"b": [1.0, None, 3.0, 4.0], "a": ["u", "v", None, "u"], "y": ["x", "z", "x", "z"]}
    )
    plan = plan_preparation(frame, ["b", "a"], "sklearn.ensemble.RandomForestClassifier", None)
    plan = with_categories(plan, frame)
    model = build_pipeline(plan, RandomForestClassifier(n_estimators=2, random_state=0))
    model.fit(canonical_features(frame, plan), frame.y)
    schema = input_schema(plan.schema(), frame.y, model)
    assert schema["features"] == [
        {"name": "b", "type": "numeric", "dtype": "float64", "nullable": True, "impute": "median"},
        {
            "name": "a",
            "type": "categorical",
            "dtype": str(frame.a.dtype),
            "nullable": True,
            "categories": ["u", "v"],
            "impute": "most_frequent",
            "encoder": "ordinal",
        },
    ]
    assert schema["classes"] == ["x", "z"]
    assert schema["target"]["name"] == "y"


def test_recorded_categories_are_capped_with_their_count() -> None:
    frame = pd.DataFrame({"c": [f"k{i}" for i in range(300)] * 2, "y": [0, 1] * 300})
    plan = with_categories(
        plan_preparation(
            frame,
            ["c"],
            "sklearn.linear_model.LogisticRegression",
            PreprocessingSpec.model_validate({"columns": [{"name": "c", "type": "categorical"}]}),
        ),
        frame,
    )
    (column,) = input_schema(plan.schema(), frame.y, object())["features"]
    assert column["categoriesCount"] == 300
    assert len(column["categories"]) == 64
