"""``file://`` objects: a mounted volume (PVC) or a local directory."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from kiln.store.errors import ObjectNotFound, StoreUnavailable
from kiln.store.results import ObjectInfo, PutResult
from kiln.store.uri import ObjectUri


@contextmanager
def open_file(uri: ObjectUri) -> Iterator[BinaryIO]:
    path = uri.local_path
    try:
        stream = path.open("rb")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise ObjectNotFound(f"{uri.raw}: no such file") from exc
    except OSError as exc:
        raise StoreUnavailable(f"{uri.raw}: {exc.strerror or exc}") from exc
    with stream:
        yield stream


def put_file(uri: ObjectUri, data: bytes) -> PutResult:
    """Write atomically: readers see the old object or the complete new one, never a part."""
    path = uri.local_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StoreUnavailable(f"{uri.raw}: cannot write: {exc.strerror or exc}") from exc
    return PutResult(uri.raw, hashlib.sha256(data).hexdigest(), len(data), None)


def head_file(uri: ObjectUri) -> ObjectInfo:
    try:
        stat = uri.local_path.stat()
    except FileNotFoundError as exc:
        raise ObjectNotFound(f"{uri.raw}: no such file") from exc
    except OSError as exc:
        raise StoreUnavailable(f"{uri.raw}: {exc.strerror or exc}") from exc
    if not uri.local_path.is_file():
        raise ObjectNotFound(f"{uri.raw}: not a regular file")
    # No content hash is available without reading; size + mtime changes like an ETag would.
    return ObjectInfo(uri.raw, stat.st_size, f"{stat.st_size:x}-{stat.st_mtime_ns:x}")
