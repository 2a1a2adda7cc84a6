"""`kiln-serve`: process lifecycle of the model server.

Start listening at once (live, not ready), load the model in the background (fetch,
verify sha256, deserialise), become ready; on SIGTERM turn readiness false, keep serving
for `--drain-delay-seconds`, stop accepting, finish in-flight requests and exit 0.
With `--workers N` the listening sockets are opened once and N forked workers share
them; each publishes its metric totals to a shared directory so any one of them can
answer a scrape for the whole pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from kiln.server.artifact import ArtifactError, load_artifact
from kiln.server.config import ConfigError, ServerConfig, parse_config
from kiln.server.http import ConnectionRegistry, HttpConnection, drain
from kiln.server.logs import configure_logging
from kiln.server.metrics import MetricsSnapshot, render
from kiln.server.predictor import build_predictor
from kiln.server.service import PROMETHEUS_TEXT, InferenceService, ServiceSettings

log = logging.getLogger("kiln.server")
SNAPSHOT_INTERVAL_SECONDS = 1.0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        print(f"kiln-serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    sockets = [_listen(config.host, config.port)]
    if config.metrics_port is not None:
        sockets.append(_listen(config.host, config.metrics_port))
    if config.workers == 1:
        return run_worker(config, sockets, worker_index=0, snapshot_dir=None)
    return _supervise(config, sockets)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


# -- one worker ------------------------------------------------------------------------


def run_worker(
    config: ServerConfig,
    sockets: list[socket.socket],
    worker_index: int,
    snapshot_dir: Path | None,
) -> int:
    _limit_native_threads()
    loop = _new_event_loop()
    try:
        return loop.run_until_complete(_serve(config, sockets, worker_index, snapshot_dir))
    finally:
        loop.close()


def _new_event_loop() -> asyncio.AbstractEventLoop:
    # The standard loop, deliberately not uvloop: measured here at 1,000 connections uvloop
    # left some connections unserved for seconds (p99 6-7 s against 0.24 s), and with the
    # lean protocol layer it was no faster at 4 connections.
    return asyncio.new_event_loop()


def _limit_native_threads() -> None:
    # One request's predict is microseconds of BLAS work: thread hand-offs only add latency,
    # and the worker count, not BLAS threads, is how this server uses the cores.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    import warnings

    import sklearn

    # The server checks finiteness and feature count itself before predicting.
    sklearn.set_config(assume_finite=True)
    warnings.filterwarnings("ignore", message="X does not have valid feature names")


async def _serve(
    config: ServerConfig,
    sockets: list[socket.socket],
    worker_index: int,
    snapshot_dir: Path | None,
) -> int:
    loop = asyncio.get_running_loop()
    settings = ServiceSettings(
        model_name=config.model_name,
        model_version=config.model_version,
        track=config.track,
        max_pending=config.max_pending,
        max_queue_seconds=config.max_queue_ms / 1000,
        max_body_bytes=config.max_body_bytes,
        serve_metrics=config.metrics_port is None,
    )
    peers = _PeerSnapshots(snapshot_dir, worker_index)
    service = InferenceService(settings, loop.call_soon, peers.read)
    registry = ConnectionRegistry()

    def connection() -> HttpConnection:
        return HttpConnection(service, registry, config.max_body_bytes)

    servers = [await loop.create_server(connection, sock=sockets[0], backlog=1024)]
    if len(sockets) > 1:
        metrics_handler = _MetricsOnly(service)
        servers.append(
            await loop.create_server(
                lambda: HttpConnection(metrics_handler, registry, 1024), sock=sockets[1]
            )
        )
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        log.info("listening", extra={"address": f"{host}:{port}", "worker": worker_index})

    stop = asyncio.Event()
    exit_code = 0
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    publisher = asyncio.create_task(peers.publish_forever(service)) if snapshot_dir else None

    load_failed = asyncio.Event()
    loader = loop.run_in_executor(None, _load, config, service, loop, load_failed)
    stop_wait = asyncio.create_task(stop.wait())
    fail_wait = asyncio.create_task(load_failed.wait())
    done, _ = await asyncio.wait({stop_wait, fail_wait}, return_when=asyncio.FIRST_COMPLETED)
    if fail_wait in done and config.exit_on_load_failure:
        exit_code = 1
    stop_wait.cancel()
    fail_wait.cancel()
    if fail_wait in done and not config.exit_on_load_failure:
        await stop.wait()  # stay up, NotReady with the reason, until told to stop

    log.info("shutting down: readiness false, draining", extra={"worker": worker_index})
    service.start_draining()
    if config.drain_delay_seconds > 0 and exit_code == 0:
        await asyncio.sleep(config.drain_delay_seconds)
    drained = await drain(servers, registry, config.drain_timeout_seconds)
    if not drained:
        log.warning("drain timed out with connections still open", extra={"worker": worker_index})
    if publisher is not None:
        publisher.cancel()
        peers.publish(service)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(loader), timeout=0.1)
    log.info("stopped", extra={"worker": worker_index, "exit_code": exit_code})
    return exit_code


def _load(
    config: ServerConfig,
    service: InferenceService,
    loop: asyncio.AbstractEventLoop,
    failed: asyncio.Event,
) -> None:
    started = time.monotonic()
    try:
        artifact = load_artifact(
            config.artifact_uri,
            config.artifact_sha256,
            config.model_format,
            allow_pickle=config.allow_pickle,
            extra_trusted=config.trusted_types,
        )
        predictor = build_predictor(artifact.estimator, config.feature_names)
        _warm_up(predictor.predict, predictor.schema.n_features)
    except ArtifactError as exc:
        _report_failure(service, loop, failed, f"{exc.reason}: {exc}")
        return
    except Exception as exc:
        _report_failure(service, loop, failed, f"ModelError: {exc}")
        return
    loop.call_soon_threadsafe(service.model_loaded, predictor, artifact.sha256)
    log.info(
        "model loaded; ready",
        extra={
            "model": config.model_name,
            "version": config.model_version,
            "sha256": artifact.sha256,
            "bytes": artifact.size,
            "estimator": type(artifact.estimator).__name__,
            "fast_path": predictor.fast_path,
            "seconds": round(time.monotonic() - started, 3),
        },
    )


def _report_failure(
    service: InferenceService,
    loop: asyncio.AbstractEventLoop,
    failed: asyncio.Event,
    reason: str,
) -> None:
    log.error("model not loaded; staying NotReady", extra={"reason": reason})
    loop.call_soon_threadsafe(service.model_failed, reason)
    loop.call_soon_threadsafe(failed.set)


def _warm_up(predict: Callable[..., object], n_features: int) -> None:
    import numpy as np

    predict(np.zeros((1, n_features)))


class _MetricsOnly:
    """Handler for a separate metrics port: `/metrics` and nothing else."""

    def __init__(self, service: InferenceService) -> None:
        self._service = service

    def handle(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        reply: Callable[[int, bytes, tuple[tuple[str, str], ...]], None],
        received_at: float,
    ) -> None:
        if target.split("?", 1)[0] == "/metrics" and method in ("GET", "HEAD"):
            reply(200, render(self._service), (("content-type", PROMETHEUS_TEXT),))
        else:
            reply(404, b'{"error": "only /metrics is served on this port"}', ())


class _PeerSnapshots:
    """Metric totals shared between worker processes through small files."""

    def __init__(self, directory: Path | None, worker_index: int) -> None:
        self._directory = directory
        self._own = f"worker-{worker_index}.json"

    def read(self) -> list[MetricsSnapshot]:
        if self._directory is None:
            return []
        snapshots: list[MetricsSnapshot] = []
        for path in sorted(self._directory.glob("worker-*.json")):
            if path.name == self._own:
                continue
            with contextlib.suppress(OSError, ValueError, TypeError):
                raw = orjson.loads(path.read_bytes())
                raw["requests_by_code"] = {int(k): v for k, v in raw["requests_by_code"].items()}
                snapshots.append(MetricsSnapshot(**raw))
        return snapshots

    def publish(self, service: InferenceService) -> None:
        if self._directory is None:
            return
        snapshot = service.metrics.snapshot()
        target = self._directory / self._own
        temporary = target.with_suffix(".tmp")
        temporary.write_bytes(orjson.dumps(snapshot.__dict__, option=orjson.OPT_NON_STR_KEYS))
        os.replace(temporary, target)

    async def publish_forever(self, service: InferenceService) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_SECONDS)
            with contextlib.suppress(OSError):
                self.publish(service)


# -- several workers -------------------------------------------------------------------


def _supervise(config: ServerConfig, sockets: list[socket.socket]) -> int:
    snapshot_dir = Path(tempfile.mkdtemp(prefix="kiln-serve-metrics-"))
    children: dict[int, int] = {}
    for index in range(config.workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = run_worker(config, sockets, index, snapshot_dir)
            finally:
                os._exit(code)
        children[pid] = index
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    exit_code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.pop(pid, None)
        code = os.waitstatus_to_exitcode(status)
        exit_code = max(exit_code, code if code >= 0 else 1)
        if not stopping:
            log.error("worker exited unexpectedly; stopping the others", extra={"code": code})
            forward(signal.SIGTERM, None)
    shutil.rmtree(snapshot_dir, ignore_errors=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
