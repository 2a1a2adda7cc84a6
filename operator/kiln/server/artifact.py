"""Fetch a model artifact, verify its sha256, and deserialise it safely (fail closed).

Order matters: the bytes are hashed and compared before any deserialiser sees them, and
skops is given an explicit list of trusted types that only admits the scikit-learn,
numpy and scipy namespaces, the exact XGBoost / LightGBM / Kiln types a Kiln pipeline is
made of (`KNOWN_MODEL_TYPES`: names, not namespaces), and types the operator explicitly
trusts. Pickle, which executes arbitrary code on load, is refused unless explicitly
allowed.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiln.contract.monitoring import Baseline

SKOPS = "skops"
PICKLE = "pickle"
SUPPORTED_FORMATS = (SKOPS, PICKLE)
TRUSTED_NAMESPACES = ("sklearn.", "numpy.", "scipy.")
# Exact names: the estimators allow-listed by the trainer and the pieces of their state
# skops reports (the boosters keep their trees in their own model format inside).
KNOWN_MODEL_TYPES = frozenset(
    {
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRegressor",
        "xgboost.core.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
        "lightgbm.basic.Booster",
        "collections.OrderedDict",
        "kiln.tabular.transforms.date_parts",
        "kiln.tabular.transforms.date_part_names",
        "kiln.tabular.transforms.EncodedLabelClassifier",
    }
)
MAX_ARTIFACT_BYTES = 2 << 30


class ArtifactError(Exception):
    """The artifact cannot be served; `reason` is a short CamelCase cause for status/logs."""

    reason = "ArtifactError"


class IntegrityError(ArtifactError):
    reason = "IntegrityError"


class UntrustedArtifactError(ArtifactError):
    reason = "UntrustedArtifact"


class ArtifactUnavailableError(ArtifactError):
    reason = "ArtifactUnavailable"


class InvalidBaselineError(ArtifactError):
    reason = "InvalidBaseline"


@dataclass(frozen=True)
class LoadedArtifact:
    estimator: Any
    sha256: str
    size: int


def fetch_artifact(uri: str, max_bytes: int = MAX_ARTIFACT_BYTES) -> bytes:
    """The artifact's bytes, from s3://, file://, http(s):// or a plain path."""
    from kiln.store import ObjectStore, StoreError

    if "://" not in uri:
        uri = "file://" + uri if uri.startswith("/") else uri
    try:
        return ObjectStore().read(uri, max_bytes=max_bytes).data
    except StoreError as exc:
        raise ArtifactUnavailableError(f"cannot fetch {uri}: {exc}") from exc


def verify_sha256(data: bytes, expected: str, what: str = "artifact") -> str:
    """Return the digest of `data`; raise `IntegrityError` unless it equals `expected`."""
    wanted = expected.strip().lower().removeprefix("sha256:")
    if len(wanted) != 64 or any(c not in "0123456789abcdef" for c in wanted):
        raise IntegrityError(f"expected sha256 {expected!r} is not a 64-digit hex digest")
    actual = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(actual, wanted):
        raise IntegrityError(f"{what} sha256 {actual} does not match the expected {wanted}")
    return actual


def untrusted_types(data: bytes, extra_trusted: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Split the types skops does not trust by default into (admitted, refused)."""
    import skops.io as sio

    extra = set(extra_trusted)
    admitted: list[str] = []
    refused: list[str] = []
    try:
        found = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise ArtifactError(f"not a readable skops artifact: {exc}") from exc
    for type_name in found:
        if (
            type_name in extra
            or type_name in KNOWN_MODEL_TYPES
            or type_name.startswith(TRUSTED_NAMESPACES)
        ):
            admitted.append(type_name)
        else:
            refused.append(type_name)
    return admitted, refused


def deserialise(
    data: bytes, fmt: str, *, allow_pickle: bool, extra_trusted: Iterable[str] = ()
) -> Any:
    if fmt == SKOPS:
        import skops.io as sio

        admitted, refused = untrusted_types(data, extra_trusted)
        if refused:
            raise UntrustedArtifactError(
                "skops artifact contains types outside sklearn/numpy/scipy and the known "
                "XGBoost/LightGBM/Kiln types: " + ", ".join(refused)
            )
        try:
            return sio.loads(data, trusted=admitted)
        except Exception as exc:
            raise ArtifactError(f"cannot load skops artifact: {exc}") from exc
    if fmt == PICKLE:
        if not allow_pickle:
            raise UntrustedArtifactError(
                "pickle artifacts can run arbitrary code on load and are refused; "
                "use skops, or start the server with --allow-pickle"
            )
        try:
            return pickle.load(io.BytesIO(data))  # explicitly allowed by --allow-pickle
        except Exception as exc:
            raise ArtifactError(f"cannot load pickle artifact: {exc}") from exc
    raise ArtifactError(f"unknown model format {fmt!r}; expected one of {SUPPORTED_FORMATS}")


def load_artifact(
    uri: str,
    expected_sha256: str,
    fmt: str = SKOPS,
    *,
    allow_pickle: bool = False,
    extra_trusted: Iterable[str] = (),
) -> LoadedArtifact:
    """Fetch, verify, then deserialise; any failure raises an `ArtifactError`."""
    if fmt not in SUPPORTED_FORMATS:
        raise ArtifactError(f"unknown model format {fmt!r}; expected one of {SUPPORTED_FORMATS}")
    if fmt == PICKLE and not allow_pickle:
        deserialise(b"", fmt, allow_pickle=False)  # raises the refusal before any download
    data = fetch_artifact(uri)
    digest = verify_sha256(data, expected_sha256)
    estimator = deserialise(data, fmt, allow_pickle=allow_pickle, extra_trusted=extra_trusted)
    return LoadedArtifact(estimator=estimator, sha256=digest, size=len(data))


MAX_BASELINE_BYTES = 64 << 20


def load_baseline(uri: str, expected_sha256: str) -> Baseline:
    """The training baseline (`baseline.json`), fetched and verified like the artifact."""
    from pydantic import ValidationError

    from kiln.contract.monitoring import BASELINE_SCHEMA_VERSION, Baseline

    data = fetch_artifact(uri, max_bytes=MAX_BASELINE_BYTES)
    verify_sha256(data, expected_sha256, what="baseline")
    try:
        baseline = Baseline.model_validate_json(data)
    except ValidationError as exc:
        raise InvalidBaselineError(f"{uri} is not a Kiln baseline: {exc}") from exc
    if baseline.schema_version > BASELINE_SCHEMA_VERSION:
        raise InvalidBaselineError(
            f"{uri}: baseline schema_version {baseline.schema_version} is newer than this "
            f"server reads ({BASELINE_SCHEMA_VERSION})"
        )
    return baseline
