"""Loading the training table: fetch bytes, verify their digest, parse, check the columns.

Column types are not checked here: text, booleans and missing values are prepared by the
pipeline (kiln.trainer.preprocessing).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd

from kiln.contract.train_spec import DatasetFormat, DatasetSpec
from kiln.store import ObjectNotFound, ObjectStore, StoreError, normalise_sha256
from kiln.trainer.errors import Reason, TrainingError

# A pod's memory limit is the real bound; this stops a mistaken URI from filling it.
MAX_DATASET_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class LoadedDataset:
    uri: str
    sha256: str
    size_bytes: int
    frame: pd.DataFrame
    features: list[str]
    target: str
    sensitive_column: str | None

    @property
    def rows(self) -> int:
        return len(self.frame)


def load_dataset(spec: DatasetSpec, store: ObjectStore) -> LoadedDataset:
    try:
        blob = store.read(spec.uri, max_bytes=MAX_DATASET_BYTES)
    except ObjectNotFound as exc:
        raise TrainingError(Reason.DATASET_UNAVAILABLE, f"dataset not found: {exc}") from exc
    except StoreError as exc:
        raise TrainingError(Reason.DATASET_UNAVAILABLE, f"dataset unreachable: {exc}") from exc
    if spec.sha256 is not None and normalise_sha256(spec.sha256) != blob.sha256:
        raise TrainingError(
            Reason.INTEGRITY_ERROR,
            f"dataset {spec.uri} has sha256 {blob.sha256}, "
            f"but the TrainingJob pins {normalise_sha256(spec.sha256)}",
        )
    frame = parse_table(blob.data, spec.format, spec.uri)
    features = select_columns(frame, spec)
    return LoadedDataset(
        uri=spec.uri,
        sha256=blob.sha256,
        size_bytes=blob.size,
        frame=frame,
        features=features,
        target=spec.target,
        sensitive_column=spec.sensitive_column,
    )


def parse_table(data: bytes, fmt: DatasetFormat, uri: str) -> pd.DataFrame:
    try:
        if fmt == "csv":
            # compression="infer" needs a name; the bytes alone decide between gzip and plain.
            compression = "gzip" if data[:2] == b"\x1f\x8b" else None
            frame = pd.read_csv(io.BytesIO(data), compression=compression)
        else:
            frame = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # every parser error means the same to the user
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise TrainingError(
            Reason.INVALID_DATASET, f"cannot parse {uri} as {fmt}: {message}"
        ) from exc
    if frame.empty:
        raise TrainingError(Reason.INVALID_DATASET, f"dataset {uri} has no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def select_columns(frame: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """The feature columns, after checking that every named column exists and is usable."""
    columns = list(frame.columns)
    named = [spec.target, *(spec.features or [])]
    if spec.sensitive_column:
        named.append(spec.sensitive_column)
    missing = [c for c in named if c not in columns]
    if missing:
        raise TrainingError(
            Reason.INVALID_DATASET,
            f"dataset {spec.uri} lacks column(s) {', '.join(map(repr, missing))}; "
            f"it has {', '.join(map(repr, columns))}",
        )
    if spec.features is not None:
        features = list(spec.features)
    else:
        excluded = {spec.target, spec.sensitive_column}
        features = [c for c in columns if c not in excluded]
    if not features:
        raise TrainingError(Reason.INVALID_DATASET, f"dataset {spec.uri} has no feature columns")
    if frame[spec.target].isna().any():
        rows = int(frame[spec.target].isna().sum())
        raise TrainingError(
            Reason.INVALID_DATASET, f"target column {spec.target!r} is empty in {rows} row(s)"
        )
    return features
