"""The installed Kiln version: image tags and reports carry it."""

from __future__ import annotations

from importlib import metadata


def kiln_version() -> str:
    try:
        return metadata.version("kiln")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0.0.0"


KILN_VERSION = kiln_version()
