"""Library versions recorded with every model: what it takes to load and reproduce it."""

from __future__ import annotations

import platform
from importlib import metadata


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for key, distribution in (
        ("sklearn", "scikit-learn"),
        ("skops", "skops"),
        ("numpy", "numpy"),
        ("pandas", "pandas"),
        ("kiln", "kiln"),
    ):
        try:
            versions[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[key] = "unknown"
    # Recorded when installed: a model of theirs needs the same version to load.
    # xgboost-cpu is the CPU-only wheel of the same package.
    for key, distributions in (
        ("xgboost", ("xgboost", "xgboost-cpu")),
        ("lightgbm", ("lightgbm",)),
    ):
        for distribution in distributions:
            try:
                versions[key] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions
