"""A lean HTTP/1.1 server: asyncio protocol + the `httptools` (llhttp) parser.

Just what an inference endpoint needs, with the per-request cost kept small: keep-alive,
pipelining (responses leave in request order even when an inference answer comes a
loop turn later than a health answer behind it), `Expect: 100-continue`, a body size
limit (413 before the body is read when Content-Length says so), 400 for unparseable
HTTP, back-pressure from slow readers, and a graceful drain that stops accepting,
finishes what was received and closes idle keep-alive connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol, cast

import httptools
import orjson

log = logging.getLogger("kiln.server.http")

_STATUS_LINES: dict[int, bytes] = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus
}
_JSON_TYPE = b"content-type: application/json\r\n"
_CLOSE = b"connection: close\r\n"
_LINGER_SECONDS = 5.0


class RequestHandler(Protocol):
    def handle(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        reply: Callable[[int, bytes, tuple[tuple[str, str], ...]], None],
        received_at: float,
    ) -> None: ...


class _Clock:
    """The Date header, formatted once a second instead of once a response."""

    def __init__(self) -> None:
        self.date_header = b""
        self._second = -1

    def header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self.date_header = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self.date_header


_clock = _Clock()


def encode_response(
    status: int,
    body: bytes,
    headers: tuple[tuple[str, str], ...],
    keep_alive: bool,
    head_only: bool = False,
) -> bytes:
    parts = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()]
    has_type = False
    for name, value in headers:
        if name == "content-type":
            has_type = True
        parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    if not has_type:
        parts.append(_JSON_TYPE)
    parts.append(_clock.header())
    parts.append(b"content-length: %d\r\n" % len(body))
    if not keep_alive:
        parts.append(_CLOSE)
    parts.append(b"\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)


class _Slot:
    """A response position on a connection, filled when the answer is ready."""

    __slots__ = ("data", "keep_alive")

    def __init__(self, keep_alive: bool) -> None:
        self.data: bytes | None = None
        self.keep_alive = keep_alive


# How long a drain waits for the first request of a connection it has just accepted.
_FIRST_REQUEST_GRACE_SECONDS = 2.0

# Requests a kubelet or a Prometheus makes to the pod itself, not through a Service: they
# say nothing about whether clients still reach the pod.
_NOT_CLIENT_PATHS = frozenset((b"/v2/health/live", b"/v2/health/ready", b"/metrics"))


class ConnectionRegistry:
    """The open connections of one server, for draining on shutdown, and when a client
    last opened one (its first request not a probe or a scrape)."""

    def __init__(self) -> None:
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self.last_client_connection = 0.0  # time.perf_counter()

    def close_idle(self) -> None:
        self.closing = True
        for connection in list(self.connections):
            connection.close_when_idle()


class HttpConnection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_size",
        "_closing",
        "_first",
        "_handler",
        "_headers",
        "_in_message",
        "_max_body",
        "_opened",
        "_parser",
        "_refused",
        "_registry",
        "_slots",
        "_transport",
        "_url",
    )

    def __init__(
        self, handler: RequestHandler, registry: ConnectionRegistry, max_body: int
    ) -> None:
        self._handler = handler
        self._registry = registry
        self._max_body = max_body
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._slots: deque[_Slot] = deque()
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._in_message = False
        self._refused = False  # an error answer was queued; the connection closes after it
        self._closing = False
        self._first = True  # no request seen yet on this connection
        self._opened = 0.0

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._opened = time.perf_counter()
        self._registry.connections.add(self)
        if self._registry.closing:
            self._closing = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed HTTP request: {exc}")

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            self._refuse(413, f"request body larger than {self._max_body} bytes")
            return
        if self._headers.get("expect", "").lower() == "100-continue" and self._transport:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_size += len(body)
        if self._body_size > self._max_body:
            self._refuse(413, f"request body larger than {self._max_body} bytes")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._refused:
            return
        received_at = time.perf_counter()
        if self._first:
            self._first = False
            if self._url not in _NOT_CLIENT_PATHS:
                self._registry.last_client_connection = received_at
        keep_alive = self._parser.should_keep_alive() and not self._closing
        slot = _Slot(keep_alive)
        self._slots.append(slot)
        method = self._parser.get_method().decode("latin-1")
        head_only = method == "HEAD"
        body = b"".join(self._body) if len(self._body) != 1 else self._body[0]

        def reply(status: int, payload: bytes, headers: tuple[tuple[str, str], ...]) -> None:
            slot.data = encode_response(status, payload, headers, slot.keep_alive, head_only)
            self._write_ready()

        try:
            self._handler.handle(
                method, self._url.decode("latin-1"), self._headers, body, reply, received_at
            )
        except Exception:
            log.exception("request handler failed")
            if slot.data is None:
                reply(500, b'{"error": "internal server error"}', ())

    # -- writing -------------------------------------------------------------------------

    def _write_ready(self) -> None:
        transport = self._transport
        slots = self._slots
        while slots and slots[0].data is not None:
            slot = slots.popleft()
            if transport is None:
                continue
            transport.write(slot.data)  # type: ignore[arg-type]
            if not slot.keep_alive:
                transport.close()
                self._transport = None
                transport = None
        if transport is None or slots:
            return
        if self._refused:
            self._linger_then_close(transport)
        elif self._closing and not self._in_message:
            transport.close()
            self._transport = None

    def _refuse(self, status: int, message: str) -> None:
        """Answer an unrecoverable request error, then close (the stream is out of sync).

        The close lingers: closing a socket with unread input makes the kernel send a
        reset that can destroy the answer before the client reads it, so the rest of
        what the client sends is read and dropped for up to `_LINGER_SECONDS`.
        """
        if self._refused:
            return
        self._refused = True
        self._in_message = False
        slot = _Slot(keep_alive=True)  # keep the transport open; the linger closes it
        body = orjson.dumps({"error": message})
        slot.data = encode_response(status, body, (), keep_alive=False)
        self._slots.append(slot)
        self._write_ready()

    def _close_now(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def eof_received(self) -> bool:
        if self._slots:
            self._closing = True  # answer what was asked, then close
            return True
        return False

    def _linger_then_close(self, transport: asyncio.Transport) -> None:
        if transport.can_write_eof():
            transport.write_eof()
        asyncio.get_running_loop().call_later(_LINGER_SECONDS, self._close_now)

    def close_when_idle(self) -> None:
        self._closing = True
        for slot in self._slots:
            slot.keep_alive = False
        if self._first and time.perf_counter() - self._opened < _FIRST_REQUEST_GRACE_SECONDS:
            # Just accepted, its request still on the way: closing now would reset the
            # client. It is answered, then closed (or closed once the grace is over).
            return
        if not self._slots and not self._in_message and self._transport is not None:
            self._transport.close()
            self._transport = None


async def wait_for_quiet(
    registry: ConnectionRegistry, quiet_seconds: float, timeout_seconds: float
) -> bool:
    """Keep accepting until no client has opened a connection for `quiet_seconds`.

    After SIGTERM the pod leaves the Service's endpoints, but every node's proxy learns it
    in its own time (seconds on a busy node): until then new connections still arrive,
    and refusing them would fail requests. Returns False when clients were still arriving
    after `timeout_seconds`.
    """
    deadline = time.perf_counter() + timeout_seconds
    while True:
        now = time.perf_counter()
        if now - registry.last_client_connection >= quiet_seconds:
            return True
        if now >= deadline:
            return False
        await asyncio.sleep(min(0.05, quiet_seconds))


async def drain(
    servers: list[asyncio.base_events.Server],
    registry: ConnectionRegistry,
    timeout_seconds: float,
) -> bool:
    """Stop accepting, let in-flight requests finish, close idle connections.

    Returns True when every connection closed within `timeout_seconds`.
    """
    for server in servers:
        server.close()
    registry.close_idle()
    deadline = time.monotonic() + timeout_seconds
    while registry.connections and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        registry.close_idle()
    return not registry.connections
