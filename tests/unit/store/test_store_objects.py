import hashlib
from pathlib import Path

import pytest

from kiln.store import (
    ObjectNotFound,
    ObjectStore,
    UnsupportedUri,
    join_uri,
    parse_uri,
)

pytestmark = pytest.mark.unit


def test_parse_s3_uri() -> None:
    uri = parse_uri("s3://bucket/a/b.csv")
    assert (uri.scheme, uri.location, uri.s3_key) == ("s3", "bucket", "a/b.csv")


@pytest.mark.parametrize(
    "bad", ["ftp://h/x", "s3://bucket", "s3:///key", "file://relative/x", "/plain/path"]
)
def test_unsupported_or_malformed_uris_are_refused(bad: str) -> None:
    with pytest.raises(UnsupportedUri):
        parse_uri(bad)


def test_join_uri_puts_exactly_one_slash_between_parts() -> None:
    assert join_uri("s3://b/prefix/", "/ns/", "job", "run-1") == "s3://b/prefix/ns/job/run-1"
    assert join_uri("file:///out", "x") == "file:///out/x"


def test_put_then_read_round_trips_with_sha256(tmp_path: Path) -> None:
    store = ObjectStore(env={})
    uri = (tmp_path / "deep" / "dir" / "model.skops").as_uri()
    data = b"model bytes" * 1000
    put = store.put(uri, data)
    assert put.sha256 == hashlib.sha256(data).hexdigest() and put.size == len(data)
    blob = store.read(uri)
    assert blob.data == data and blob.sha256 == put.sha256
    assert store.sha256(uri) == (put.sha256, len(data))


def test_put_leaves_no_temporary_files(tmp_path: Path) -> None:
    ObjectStore(env={}).put((tmp_path / "m.bin").as_uri(), b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["m.bin"]


def test_head_changes_when_the_object_changes(tmp_path: Path) -> None:
    store = ObjectStore(env={})
    uri = (tmp_path / "data.csv").as_uri()
    store.put(uri, b"a,b\n1,2\n")
    before = store.head(uri)
    store.put(uri, b"a,b\n1,2\n3,4\n")
    after = store.head(uri)
    assert before.size == 8 and after.size == 12
    assert before.etag != after.etag


def test_missing_object_is_object_not_found(tmp_path: Path) -> None:
    store = ObjectStore(env={})
    with pytest.raises(ObjectNotFound):
        store.read((tmp_path / "nope").as_uri())
    with pytest.raises(ObjectNotFound):
        store.head((tmp_path / "nope").as_uri())


def test_https_objects_are_read_only() -> None:
    with pytest.raises(UnsupportedUri):
        ObjectStore(env={}).put("https://example.invalid/x", b"x")
