import hashlib
from pathlib import Path

import pandas as pd
import pytest

from kiln.contract.train_spec import DatasetSpec
from kiln.store import ObjectStore
from kiln.trainer.dataset import load_dataset
from kiln.trainer.errors import Reason, TrainingError

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"
IRIS = EXAMPLES / "iris.csv"
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _load(uri: str, **fields: object) -> object:
    spec = DatasetSpec.model_validate({"uri": uri, "target": "species", **fields})
    return load_dataset(spec, ObjectStore(env={}))


def _reason(uri: str, **fields: object) -> TrainingError:
    with pytest.raises(TrainingError) as info:
        _load(uri, **fields)
    return info.value


def test_csv_from_file_uri_records_the_sha256_of_the_exact_bytes() -> None:
    data = load_dataset(DatasetSpec(uri=IRIS.as_uri(), target="species"), ObjectStore(env={}))
    assert data.sha256 == hashlib.sha256(IRIS.read_bytes()).hexdigest()
    assert data.rows == 150
    assert data.features == IRIS_FEATURES


def test_parquet_gives_the_same_table_as_csv(tmp_path: Path) -> None:
    parquet = tmp_path / "iris.parquet"
    pd.read_csv(IRIS).to_parquet(parquet)
    from_parquet = load_dataset(
        DatasetSpec(uri=parquet.as_uri(), target="species", format="parquet"), ObjectStore(env={})
    )
    from_csv = load_dataset(DatasetSpec(uri=IRIS.as_uri(), target="species"), ObjectStore(env={}))
    pd.testing.assert_frame_equal(from_parquet.frame, from_csv.frame)
    assert from_parquet.sha256 == hashlib.sha256(parquet.read_bytes()).hexdigest()


def test_pinned_digest_that_matches_is_accepted() -> None:
    digest = hashlib.sha256(IRIS.read_bytes()).hexdigest()
    spec = DatasetSpec(uri=IRIS.as_uri(), target="species", sha256=digest)
    assert load_dataset(spec, ObjectStore(env={})).sha256 == digest


def test_pinned_digest_mismatch_is_an_integrity_error() -> None:
    error = _reason(IRIS.as_uri(), sha256="0" * 64)
    assert error.reason is Reason.INTEGRITY_ERROR
    assert hashlib.sha256(IRIS.read_bytes()).hexdigest() in error.message


def test_missing_file_is_dataset_unavailable(tmp_path: Path) -> None:
    error = _reason((tmp_path / "absent.csv").as_uri())
    assert error.reason is Reason.DATASET_UNAVAILABLE


def test_missing_target_and_feature_columns_are_named() -> None:
    error = _reason(IRIS.as_uri(), target="label", features=["petal_width", "stem_length"])
    assert error.reason is Reason.INVALID_DATASET
    assert "'label'" in error.message and "'stem_length'" in error.message


def test_shipped_broken_dataset_is_an_invalid_dataset() -> None:
    error = _reason((EXAMPLES / "iris-broken.csv").as_uri())
    assert error.reason is Reason.INVALID_DATASET
    assert "line 21" in error.message


def test_unparseable_parquet_is_an_invalid_dataset() -> None:
    error = _reason(IRIS.as_uri(), format="parquet")
    assert error.reason is Reason.INVALID_DATASET


def test_text_column_and_empty_cells_are_loaded_as_features(tmp_path: Path) -> None:
    # Preparation (kiln.trainer.preprocessing) handles text and missing values; loading
    # no longer refuses them.
    frame = pd.read_csv(IRIS)
    frame["colour"] = ["blue", None, "red"] * 50
    frame.loc[3, "sepal_length"] = None
    path = tmp_path / "coloured.csv"
    frame.to_csv(path, index=False)
    data = _load(path.as_uri())
    assert data.features == [*IRIS_FEATURES, "colour"]  # type: ignore[attr-defined]


def test_sensitive_column_is_left_out_of_default_features(tmp_path: Path) -> None:
    frame = pd.read_csv(IRIS)
    frame["site"] = [i % 3 for i in range(len(frame))]
    path = tmp_path / "sited.csv"
    frame.to_csv(path, index=False)
    spec = DatasetSpec(uri=path.as_uri(), target="species", sensitive_column="site")
    data = load_dataset(spec, ObjectStore(env={}))
    assert data.features == IRIS_FEATURES
    assert data.sensitive_column == "site"
