"""Reading a baseline by its reference: verified by sha256 before it is parsed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kiln.api.model_version import BaselineReference
from kiln.contract.monitoring import Baseline, Distribution, FeatureProfile
from kiln.store import IntegrityError, InvalidObject, ObjectNotFound, ObjectStore, StoreError
from kiln.store.baseline import read_baseline

pytestmark = pytest.mark.unit

BASELINE = Baseline(
    rows=3,
    features=[
        FeatureProfile(
            name="x",
            kind="numeric",
            distribution=Distribution(edges=[1.0], shares=[0.333333, 0.666667], count=3),
        )
    ],
    predictions=Distribution(labels=["a", "b"], shares=[0.5, 0.5], count=2),
)


def _written(tmp_path: Path, data: bytes) -> tuple[Path, BaselineReference]:
    path = tmp_path / "baseline.json"
    path.write_bytes(data)
    reference = BaselineReference(uri=path.as_uri(), sha256=hashlib.sha256(data).hexdigest())
    return path, reference


def test_a_verified_baseline_is_parsed(tmp_path: Path) -> None:
    _, reference = _written(tmp_path, BASELINE.model_dump_json(by_alias=True).encode())
    assert read_baseline(ObjectStore(), reference) == BASELINE


def test_a_tampered_baseline_is_an_integrity_error_naming_both_digests(tmp_path: Path) -> None:
    path, reference = _written(tmp_path, BASELINE.model_dump_json(by_alias=True).encode())
    tampered = path.read_bytes().replace(b"0.666667", b"0.966667")
    path.write_bytes(tampered)
    with pytest.raises(IntegrityError) as caught:
        read_baseline(ObjectStore(), reference)
    actual = hashlib.sha256(tampered).hexdigest()
    assert caught.value.expected == reference.sha256 and caught.value.actual == actual
    assert reference.sha256 in str(caught.value) and actual in str(caught.value)
    assert isinstance(caught.value, StoreError) and caught.value.reason == "IntegrityError"


def test_a_verified_document_that_is_not_a_baseline_is_invalid(tmp_path: Path) -> None:
    _, reference = _written(tmp_path, b'{"rows": -1}')
    with pytest.raises(InvalidObject, match="not a training baseline"):
        read_baseline(ObjectStore(), reference)


def test_a_missing_baseline_is_the_stores_error(tmp_path: Path) -> None:
    reference = BaselineReference(uri=(tmp_path / "none.json").as_uri(), sha256="a" * 64)
    with pytest.raises(ObjectNotFound):
        read_baseline(ObjectStore(), reference)
