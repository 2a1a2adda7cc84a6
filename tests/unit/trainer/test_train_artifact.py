import io
import zipfile

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

from kiln.trainer.artifact import FIXED_ZIP_TIME, dump_model, input_schema

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


def test_input_schema_lists_features_in_order_with_dtypes_and_classes() -> None:
    frame = pd.DataFrame({"b": [1.0, 2.0], "a": [1, 2], "y": ["x", "z"]})
    model = RandomForestClassifier(n_estimators=2, random_state=0).fit(frame[["b", "a"]], frame.y)
    schema = input_schema(frame, ["b", "a"], "y", model)
    assert schema["features"] == [
        {"name": "b", "dtype": "float64"},
        {"name": "a", "dtype": "int64"},
    ]
    assert schema["classes"] == ["x", "z"]
    assert schema["target"]["name"] == "y"
