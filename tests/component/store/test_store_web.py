"""https:// and http:// objects read from an HTTP server on loopback."""

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiln.store import ObjectNotFound, ObjectStore

pytestmark = pytest.mark.component

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


@pytest.fixture
def http_server() -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(EXAMPLES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_object_over_http_is_read_with_the_sha256_of_its_bytes(http_server: str) -> None:
    blob = ObjectStore(env={}).read(f"{http_server}/iris.csv")
    assert blob.data == (EXAMPLES / "iris.csv").read_bytes()
    assert blob.sha256 == hashlib.sha256(blob.data).hexdigest()


def test_missing_http_object_is_not_found(http_server: str) -> None:
    with pytest.raises(ObjectNotFound):
        ObjectStore(env={}).read(f"{http_server}/absent.csv")
