"""SHA-256 computed while bytes stream past, so large objects are hashed without a second read."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class Blob:
    """Bytes read from a store together with the digest of exactly those bytes."""

    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def iter_chunks(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterable[bytes]:
    while chunk := stream.read(chunk_size):
        yield chunk


def read_hashing(stream: BinaryIO, max_bytes: int | None = None) -> Blob:
    """Read a stream to its end, hashing each chunk as it arrives.

    ``max_bytes`` guards memory: a larger stream raises ``ValueError`` instead of
    being held in full.
    """
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    total = 0
    for chunk in iter_chunks(stream):
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise ValueError(f"object is larger than the limit of {max_bytes} bytes")
        digest.update(chunk)
        chunks.append(chunk)
    return Blob(b"".join(chunks), digest.hexdigest())


def hash_stream(stream: BinaryIO) -> tuple[str, int]:
    """Digest and size of a stream without keeping its bytes."""
    digest = hashlib.sha256()
    total = 0
    for chunk in iter_chunks(stream):
        digest.update(chunk)
        total += len(chunk)
    return digest.hexdigest(), total


def normalise_sha256(value: str) -> str:
    """Accept ``sha256:<hex>`` or bare hex, in any case; return bare lower-case hex."""
    text = value.strip().lower()
    return text.removeprefix("sha256:")
