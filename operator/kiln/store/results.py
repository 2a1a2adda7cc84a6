"""Value types shared by every store backend."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD tells about an object: enough to notice that it changed."""

    uri: str
    size: int | None
    etag: str | None


@dataclass(frozen=True)
class PutResult:
    """An object just written, with the digest of the bytes that were sent."""

    uri: str
    sha256: str
    size: int
    etag: str | None
