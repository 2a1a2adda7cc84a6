"""The kubelet API subset the apiserver uses: `GET /containerLogs/...` and `/healthz`.

Served over HTTPS; clients must present a certificate signed by `--client-ca` (the
apiserver's kubelet client certificate).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from kiln.devcluster.nodeagent.logformat import (
    LogEntry,
    LogOptions,
    parse_line,
    parse_log,
    parse_time,
    render,
    render_entry,
)
from kiln.devcluster.nodeagent.podworker import ContainerRuntime, PodWorker

FindPod = Callable[[str, str], PodWorker | None]
FOLLOW_POLL_SECONDS = 0.2


def server_ssl_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    context.load_cert_chain(str(cert), str(key))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _options(query: dict[str, str]) -> LogOptions:
    since = None
    if query.get("sinceSeconds"):
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(query["sinceSeconds"]))
    elif query.get("sinceTime"):
        since = parse_time(query["sinceTime"])
    return LogOptions(
        timestamps=query.get("timestamps") in ("true", "1"),
        tail_lines=int(query["tailLines"]) if query.get("tailLines") else None,
        since=since,
        limit_bytes=int(query["limitBytes"]) if query.get("limitBytes") else None,
    )


def build_app(find_pod: FindPod) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def container_logs(request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        pod_name = request.match_info["pod"]
        container_name = request.match_info["container"]
        worker = find_pod(namespace, pod_name)
        if worker is None:
            raise web.HTTPNotFound(text=f'pod "{pod_name}" not found on this node')
        runtime = worker.container(container_name)
        if runtime is None:
            raise web.HTTPNotFound(
                text=f"container {container_name} is not valid for pod {pod_name}"
            )
        query = dict(request.query)
        previous = query.get("previous") in ("true", "1")
        path = runtime.dir.previous_log if previous else runtime.dir.log
        if not path.exists():
            if previous:
                raise web.HTTPBadRequest(
                    text=f'previous terminated container "{container_name}" '
                    f'in pod "{pod_name}" not found'
                )
            raise web.HTTPBadRequest(
                text=f'container "{container_name}" in pod "{pod_name}" '
                "is waiting to start: ContainerCreating"
            )
        options = _options(query)
        data = path.read_bytes()
        body = render(parse_log(data), options)
        follow = query.get("follow") in ("true", "1") and not previous
        if not follow:
            return web.Response(body=body, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(body)
        sent = len(body)
        # The client ending a follow (kubectl interrupted) is the normal way out.
        with contextlib.suppress(ConnectionResetError):
            await _follow(response, runtime, path, len(data), options, sent)
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)
    return app


async def _follow(
    response: web.StreamResponse,
    runtime: ContainerRuntime,
    path: Path,
    offset: int,
    options: LogOptions,
    sent: int,
) -> None:
    """Stream appended lines until the container stops (or the client goes away)."""
    pending = b""
    at_line_start = True
    attempt = runtime.attempt
    while True:
        running = runtime.running and runtime.attempt is attempt
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        offset += len(chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = bytearray()
        for line in lines:
            entry: LogEntry | None = parse_line(line)
            if entry is None:
                continue
            out += render_entry(entry, options.timestamps, at_line_start)
            at_line_start = not entry.partial
        if out:
            if options.limit_bytes is not None:
                out = out[: max(options.limit_bytes - sent, 0)]
            await response.write(bytes(out))
            sent += len(out)
            if options.limit_bytes is not None and sent >= options.limit_bytes:
                return
        if not running:
            return
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
