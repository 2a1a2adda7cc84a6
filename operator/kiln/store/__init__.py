"""Object-store access shared by the trainer and the model server.

store = ObjectStore()                      # S3 settings from the AWS_* environment
blob = store.read("s3://bucket/data.csv")  # blob.data, blob.sha256
store.put("file:///models/m.skops", data)  # -> PutResult(uri, sha256, size, etag)
store.head("https://host/data.csv")        # -> ObjectInfo(uri, size, etag)

kiln.store.baseline.read_baseline(store, reference)  # -> verified contract Baseline
"""

from kiln.store.digest import Blob, normalise_sha256, sha256_hex
from kiln.store.errors import (
    IntegrityError,
    InvalidObject,
    ObjectNotFound,
    StoreError,
    StoreUnavailable,
    UnsupportedUri,
)
from kiln.store.objects import ObjectStore
from kiln.store.results import ObjectInfo, PutResult
from kiln.store.uri import ObjectUri, join_uri, parse_uri

__all__ = [
    "Blob",
    "IntegrityError",
    "InvalidObject",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectUri",
    "PutResult",
    "StoreError",
    "StoreUnavailable",
    "UnsupportedUri",
    "join_uri",
    "normalise_sha256",
    "parse_uri",
    "sha256_hex",
]
