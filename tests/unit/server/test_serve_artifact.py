"""Artifact loading fails closed: digest first, trusted types only, no pickle by default."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.preprocessing import FunctionTransformer
from tests.support.serving import iris, iris_logistic_regression, write_skops

from kiln.server import artifact
from kiln.server.artifact import (
    ArtifactError,
    ArtifactUnavailableError,
    IntegrityError,
    UntrustedArtifactError,
    deserialise,
    load_artifact,
    untrusted_types,
    verify_sha256,
)

pytestmark = pytest.mark.unit


def test_matching_digest_loads_the_model(tmp_path: Path) -> None:
    path, digest = write_skops(iris_logistic_regression(), tmp_path)
    loaded = load_artifact(str(path), digest)
    features, _ = iris()
    np.testing.assert_array_equal(
        loaded.estimator.predict(features), iris_logistic_regression().predict(features)
    )
    assert loaded.sha256 == digest
    assert loaded.size == path.stat().st_size


def test_file_uri_and_sha256_prefix_are_accepted(tmp_path: Path) -> None:
    path, digest = write_skops(iris_logistic_regression(), tmp_path)
    assert load_artifact(f"file://{path}", f"sha256:{digest.upper()}").sha256 == digest


def test_digest_mismatch_is_refused_before_deserialising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, digest = write_skops(iris_logistic_regression(), tmp_path)
    path.write_bytes(path.read_bytes() + b"tampered")
    calls: list[bytes] = []
    monkeypatch.setattr(artifact, "deserialise", lambda data, *a, **k: calls.append(data))
    with pytest.raises(IntegrityError, match="does not match the expected"):
        load_artifact(str(path), digest)
    assert calls == []


def test_malformed_expected_digest_is_an_integrity_error() -> None:
    with pytest.raises(IntegrityError, match="not a 64-digit hex digest"):
        verify_sha256(b"data", "abc")


def test_missing_artifact_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ArtifactUnavailableError, match="cannot fetch"):
        load_artifact(str(tmp_path / "absent.skops"), "0" * 64)


def test_pickle_is_refused_by_default(tmp_path: Path) -> None:
    data = pickle.dumps(iris_logistic_regression())
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    with pytest.raises(UntrustedArtifactError, match="--allow-pickle"):
        load_artifact(str(path), hashlib.sha256(data).hexdigest(), "pickle")


def test_pickle_loads_when_explicitly_allowed(tmp_path: Path) -> None:
    data = pickle.dumps(iris_logistic_regression())
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    loaded = load_artifact(str(path), hashlib.sha256(data).hexdigest(), "pickle", allow_pickle=True)
    features, _ = iris()
    assert loaded.estimator.predict(features[:1]).tolist() == [0]


def test_types_outside_sklearn_numpy_scipy_are_refused() -> None:
    data = sio.dumps(FunctionTransformer(func=print).fit(np.zeros((2, 2))))
    _admitted, refused = untrusted_types(data)
    assert "builtins.print" in refused
    with pytest.raises(UntrustedArtifactError, match=r"builtins\.print"):
        deserialise(data, "skops", allow_pickle=False)


def test_an_operator_can_trust_an_extra_type_explicitly() -> None:
    data = sio.dumps(FunctionTransformer(func=print).fit(np.zeros((2, 2))))
    estimator = deserialise(data, "skops", allow_pickle=False, extra_trusted=["builtins.print"])
    assert estimator.func is print


def test_sklearn_types_not_trusted_by_skops_defaults_are_admitted() -> None:
    features, target = iris()
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(features, target)
    data = sio.dumps(forest)
    admitted, refused = untrusted_types(data)
    assert admitted == ["sklearn.tree._tree.Tree"]
    assert refused == []
    loaded = deserialise(data, "skops", allow_pickle=False)
    np.testing.assert_array_equal(loaded.predict(features), forest.predict(features))


def test_garbage_skops_bytes_are_an_artifact_error() -> None:
    with pytest.raises(ArtifactError):
        deserialise(b"not a zip file", "skops", allow_pickle=False)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ArtifactError, match="unknown model format"):
        load_artifact("/nowhere", "0" * 64, "onnx")


# -- the training baseline ---------------------------------------------------------------


def _baseline_file(tmp_path: Path) -> tuple[Path, str]:
    from kiln.contract.monitoring import Baseline, Distribution, FeatureProfile

    baseline = Baseline(
        rows=150,
        features=[
            FeatureProfile(
                name="sepal_length",
                kind="numeric",
                distribution=Distribution(edges=[5.0, 6.0], shares=[0.3, 0.4, 0.3], count=150),
            )
        ],
    )
    path = tmp_path / "baseline.json"
    path.write_bytes(baseline.model_dump_json(by_alias=True).encode())
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_baseline_loads_after_its_digest_matches(tmp_path: Path) -> None:
    path, digest = _baseline_file(tmp_path)
    loaded = artifact.load_baseline(str(path), digest)
    assert [f.name for f in loaded.features] == ["sepal_length"]


def test_a_baseline_whose_digest_differs_is_an_integrity_error(tmp_path: Path) -> None:
    path, _ = _baseline_file(tmp_path)
    with pytest.raises(IntegrityError, match="baseline sha256"):
        artifact.load_baseline(str(path), "0" * 64)


def test_a_file_that_is_not_a_baseline_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_bytes(b'{"features": 3}')
    with pytest.raises(artifact.InvalidBaselineError):
        artifact.load_baseline(str(path), hashlib.sha256(path.read_bytes()).hexdigest())


def test_a_baseline_integrity_failure_fails_the_model_load(tmp_path: Path) -> None:
    from kiln.server.config import parse_config
    from kiln.server.main import LoadFailure, _load

    model, model_digest = write_skops(iris_logistic_regression(), tmp_path)
    path, digest = _baseline_file(tmp_path)
    flags = [
        "--model-name=iris",
        "--model-version=1",
        f"--artifact-uri={model}",
        f"--artifact-sha256={model_digest}",
        f"--baseline-uri={path}",
    ]
    loaded = _load(parse_config([*flags, f"--baseline-sha256={digest}"], {}))
    assert loaded.baseline is not None
    with pytest.raises(LoadFailure) as failure:
        _load(parse_config([*flags, f"--baseline-sha256={'1' * 64}"], {}))
    assert failure.value.reason.startswith("IntegrityError: baseline sha256")
    assert _load(parse_config(flags[:4], {})).baseline is None
