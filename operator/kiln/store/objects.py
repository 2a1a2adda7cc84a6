"""One entry point for every supported URI scheme: open, read (with sha256), put, head."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO

from kiln.store import local, s3, web
from kiln.store.digest import Blob, hash_stream, read_hashing
from kiln.store.errors import StoreError, StoreUnavailable, UnsupportedUri
from kiln.store.results import ObjectInfo, PutResult
from kiln.store.uri import ObjectUri, parse_uri


class ObjectStore:
    """Access to objects by URI. The S3 client is created on first use, from ``env``."""

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        s3_client: Any | None = None,
        http_timeout: float = 30.0,
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self._s3_client = s3_client
        self._http_timeout = http_timeout

    def _s3(self) -> Any:
        if self._s3_client is None:
            self._s3_client = s3.make_s3_client(self._env)
        return self._s3_client

    @contextmanager
    def open(self, uri: str) -> Iterator[BinaryIO]:
        """A readable stream of the object's bytes."""
        parsed = parse_uri(uri)
        with self._open_parsed(parsed) as stream:
            yield stream

    def _open_parsed(self, parsed: ObjectUri) -> Any:
        if parsed.scheme == "file":
            return local.open_file(parsed)
        if parsed.scheme == "s3":
            return s3.open_s3(self._s3(), parsed)
        return web.open_http(parsed, self._http_timeout)

    def read(self, uri: str, *, max_bytes: int | None = None) -> Blob:
        """All bytes of the object and their sha256, hashed while streaming."""
        with self.open(uri) as stream:
            try:
                return read_hashing(stream, max_bytes)
            except StoreError:
                raise
            except ValueError as exc:
                raise StoreUnavailable(f"{uri}: {exc}") from exc
            except Exception as exc:  # a transfer cut mid-stream, in any backend
                raise StoreUnavailable(f"{uri}: read failed: {exc}") from exc

    def sha256(self, uri: str) -> tuple[str, int]:
        """Digest and size of the object, without holding it in memory."""
        with self.open(uri) as stream:
            try:
                return hash_stream(stream)
            except Exception as exc:
                raise StoreUnavailable(f"{uri}: read failed: {exc}") from exc

    def put(
        self, uri: str, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> PutResult:
        parsed = parse_uri(uri)
        if parsed.scheme == "file":
            return local.put_file(parsed, data)
        if parsed.scheme == "s3":
            return s3.put_s3(self._s3(), parsed, data, content_type)
        raise UnsupportedUri(f"{uri}: writing is supported for s3:// and file:// only")

    def head(self, uri: str) -> ObjectInfo:
        parsed = parse_uri(uri)
        if parsed.scheme == "file":
            return local.head_file(parsed)
        if parsed.scheme == "s3":
            return s3.head_s3(self._s3(), parsed)
        return web.head_http(parsed, self._http_timeout)
