"""``https://`` (and plain ``http://``) objects: read-only access with a timeout."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, cast

from kiln.store.errors import ObjectNotFound, StoreUnavailable
from kiln.store.results import ObjectInfo
from kiln.store.uri import ObjectUri

USER_AGENT = "kiln-store/1"


def _request(uri: ObjectUri, method: str) -> urllib.request.Request:
    return urllib.request.Request(uri.raw, method=method, headers={"User-Agent": USER_AGENT})


def _translate(uri: ObjectUri, exc: Exception) -> Exception:
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code in (404, 410):
            return ObjectNotFound(f"{uri.raw}: HTTP {exc.code}")
        return StoreUnavailable(f"{uri.raw}: HTTP {exc.code} {exc.reason}")
    if isinstance(exc, urllib.error.URLError):
        return StoreUnavailable(f"{uri.raw}: {exc.reason}")
    return StoreUnavailable(f"{uri.raw}: {exc}")


@contextmanager
def open_http(uri: ObjectUri, timeout: float) -> Iterator[BinaryIO]:
    try:
        response = urllib.request.urlopen(_request(uri, "GET"), timeout=timeout)
    except (urllib.error.URLError, OSError) as exc:
        raise _translate(uri, exc) from exc
    with response:
        yield cast(BinaryIO, response)


def head_http(uri: ObjectUri, timeout: float) -> ObjectInfo:
    try:
        with urllib.request.urlopen(_request(uri, "HEAD"), timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            etag = response.headers.get("ETag") or response.headers.get("Last-Modified")
    except (urllib.error.URLError, OSError) as exc:
        raise _translate(uri, exc) from exc
    return ObjectInfo(uri.raw, int(length) if length is not None else None, etag)
