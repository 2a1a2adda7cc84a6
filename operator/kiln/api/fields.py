"""Reusable annotated field types: each carries its wire schema and its Python check."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from kiln.api.common import DNS_LABEL_PATTERN, MAX_NAME_LENGTH, SHA256_PATTERN
from kiln.api.metrics import KNOWN_METRICS


def _known_metric(name: str) -> str:
    if name not in KNOWN_METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(KNOWN_METRICS)}")
    return name


MetricName = Annotated[
    str,
    AfterValidator(_known_metric),
    Field(json_schema_extra={"enum": list(KNOWN_METRICS)}),
]

# Model names become part of ModelVersion names (`<model>-v<N>`) and label values (<= 63),
# so they leave room for the `-v<N>` suffix.
MAX_MODEL_NAME_LENGTH = 52

ModelName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_MODEL_NAME_LENGTH,
        pattern=DNS_LABEL_PATTERN,
        description="Registry name of the model (lowercase RFC 1123 label, at most 52 chars).",
    ),
]

ModelVersionName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?-v[1-9][0-9]*$",
        description="Name of a ModelVersion, `<model>-v<N>`.",
    ),
]

Sha256 = Annotated[
    str,
    Field(
        min_length=64,
        max_length=64,
        pattern=SHA256_PATTERN,
        description="Lowercase hex SHA-256 digest (64 characters).",
    ),
]

ColumnName = Annotated[str, Field(min_length=1, max_length=256, description="A column name.")]

ContainerImage = Annotated[
    str,
    Field(
        min_length=1,
        max_length=512,
        pattern=r"^[^\s]+$",
        description="Container image reference (no whitespace).",
    ),
]
