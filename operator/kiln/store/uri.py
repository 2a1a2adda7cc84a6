"""Parsing of object URIs: ``s3://bucket/key``, ``file:///abs/path``, ``https://host/path``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast
from urllib.parse import unquote, urlsplit

from kiln.store.errors import UnsupportedUri

Scheme = Literal["s3", "file", "https", "http"]
SUPPORTED_SCHEMES: tuple[Scheme, ...] = ("s3", "file", "https", "http")


@dataclass(frozen=True)
class ObjectUri:
    """A parsed URI. ``location`` is the bucket (s3), host (http/s) or empty (file)."""

    scheme: Scheme
    location: str
    path: str
    raw: str

    @property
    def local_path(self) -> Path:
        """The filesystem path of a ``file://`` URI."""
        if self.scheme != "file":
            raise UnsupportedUri(f"{self.raw} is not a file:// URI")
        return Path(self.path)

    @property
    def s3_key(self) -> str:
        """The object key of an ``s3://`` URI (no leading slash)."""
        if self.scheme != "s3":
            raise UnsupportedUri(f"{self.raw} is not an s3:// URI")
        return self.path.lstrip("/")


def parse_uri(uri: str) -> ObjectUri:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise UnsupportedUri(
            f"unsupported URI {uri!r}: expected one of "
            + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
        )
    if scheme == "file":
        # file://relative would silently put the first path segment in the host part.
        if parts.netloc not in ("", "localhost"):
            raise UnsupportedUri(f"file URI {uri!r} must be absolute: file:///path/to/object")
        return ObjectUri("file", "", unquote(parts.path), uri)
    if scheme == "s3":
        key = parts.path.lstrip("/")
        if not parts.netloc or not key:
            raise UnsupportedUri(f"S3 URI {uri!r} must name a bucket and a key: s3://bucket/key")
        return ObjectUri("s3", parts.netloc, key, uri)
    if not parts.netloc:
        raise UnsupportedUri(f"URI {uri!r} has no host")
    return ObjectUri(cast(Scheme, scheme), parts.netloc, uri, uri)


def join_uri(prefix: str, *segments: str) -> str:
    """Append path segments to a URI prefix with exactly one slash between parts."""
    cleaned = [s.strip("/") for s in segments if s.strip("/")]
    return "/".join([prefix.rstrip("/"), *cleaned])
