"""kiln.store against a real S3 API (SeaweedFS on loopback)."""

import hashlib

import pytest
from tests.support.s3 import SeaweedS3

from kiln.store import ObjectNotFound, ObjectStore, StoreUnavailable

pytestmark = pytest.mark.component


@pytest.fixture(scope="module")
def bucket(seaweedfs_s3: SeaweedS3) -> str:
    return seaweedfs_s3.create_bucket("store-test")


def test_put_read_head_round_trip(seaweedfs_s3: SeaweedS3, bucket: str) -> None:
    store = ObjectStore(env=seaweedfs_s3.env())
    uri = f"s3://{bucket}/a/b/object.bin"
    data = bytes(range(256)) * 5000
    put = store.put(uri, data)
    assert put.sha256 == hashlib.sha256(data).hexdigest()
    blob = store.read(uri)
    assert blob.data == data and blob.sha256 == put.sha256
    assert store.sha256(uri) == (put.sha256, len(data))
    info = store.head(uri)
    assert info.size == len(data) and info.etag == put.etag


def test_etag_changes_when_the_object_is_replaced(seaweedfs_s3: SeaweedS3, bucket: str) -> None:
    store = ObjectStore(env=seaweedfs_s3.env())
    uri = f"s3://{bucket}/dataset.csv"
    store.put(uri, b"a,b\n1,2\n")
    before = store.head(uri).etag
    store.put(uri, b"a,b\n1,3\n")
    assert store.head(uri).etag != before


def test_missing_key_and_bucket_are_not_found(seaweedfs_s3: SeaweedS3, bucket: str) -> None:
    store = ObjectStore(env=seaweedfs_s3.env())
    with pytest.raises(ObjectNotFound):
        store.read(f"s3://{bucket}/absent")
    with pytest.raises(ObjectNotFound):
        store.head(f"s3://{bucket}/absent")
    with pytest.raises(ObjectNotFound):
        store.read("s3://no-such-bucket-here/x")


def test_bad_credentials_are_unavailable_not_not_found(
    seaweedfs_s3: SeaweedS3, bucket: str
) -> None:
    store = ObjectStore(env={**seaweedfs_s3.env(), "AWS_ACCESS_KEY_ID": "intruder"})
    with pytest.raises(StoreUnavailable):
        store.put(f"s3://{bucket}/x", b"x")


def test_kiln_s3_endpoint_takes_precedence(seaweedfs_s3: SeaweedS3, bucket: str) -> None:
    env = {
        **seaweedfs_s3.env(),
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # discard port: nothing listens
        "KILN_S3_ENDPOINT": seaweedfs_s3.endpoint,
    }
    ObjectStore(env=env).put(f"s3://{bucket}/endpoint", b"ok")
    assert ObjectStore(env=seaweedfs_s3.env()).read(f"s3://{bucket}/endpoint").data == b"ok"
