"""Read a training baseline (`baseline.json`) by its reference, verified by sha256.

    baseline = read_baseline(ObjectStore(), version.spec.baseline)

The bytes are hashed while read and compared with the digest recorded in the
ModelVersion before they are parsed: a mismatch raises `IntegrityError` naming both
digests, a document that is not a baseline raises `InvalidObject`, and a store that
cannot be reached raises its own `StoreError` (all `StoreError`s). Usable by the CLI, the
operator's services and kiln-serve alike (it imports only the store and the contract).
"""

from __future__ import annotations

import hmac
from typing import Protocol

from pydantic import ValidationError

from kiln.contract.monitoring import Baseline
from kiln.store.digest import normalise_sha256
from kiln.store.errors import IntegrityError, InvalidObject
from kiln.store.objects import ObjectStore

# A baseline of 64 monitored features is a few tens of KiB; refuse anything absurd.
MAX_BASELINE_BYTES = 16 << 20


class Reference(Protocol):
    """What a baseline is found and checked by (api.model_version.BaselineReference)."""

    @property
    def uri(self) -> str: ...

    @property
    def sha256(self) -> str: ...


def verify_sha256(uri: str, actual: str, expected: str) -> None:
    wanted = normalise_sha256(expected)
    if not hmac.compare_digest(actual.lower(), wanted):
        raise IntegrityError(uri, wanted, actual)


def parse_baseline(data: bytes, uri: str = "baseline") -> Baseline:
    try:
        return Baseline.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"msg": str(exc), "loc": ()}
        where = ".".join(str(p) for p in first.get("loc", ())) or "document"
        raise InvalidObject(f"{uri}: not a training baseline ({where}: {first['msg']})") from exc


def read_baseline(store: ObjectStore, reference: Reference) -> Baseline:
    """The baseline the reference names, after its sha256 matched the recorded one."""
    blob = store.read(reference.uri, max_bytes=MAX_BASELINE_BYTES)
    verify_sha256(reference.uri, blob.sha256, reference.sha256)
    return parse_baseline(blob.data, reference.uri)
