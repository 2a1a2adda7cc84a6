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
    return versions
