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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kiln.contract.monitoring import Baseline
from kiln.server.artifact import ArtifactError, load_artifact, load_baseline
from kiln.server.capture import CaptureWriter
from kiln.server.config import ConfigError, ServerConfig, parse_config
from kiln.server.http import ConnectionRegistry, HttpConnection, drain, wait_for_quiet
from kiln.server.logs import configure_logging
from kiln.server.predictor import Predictor, build_predictor
from kiln.server.service import PROMETHEUS_TEXT, InferenceService, ServiceSettings
from kiln.server.telemetry import MetricsSnapshot, render

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
        return run_worker(config, sockets, worker_index=0, snapshot_dir=None).exit_code
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


@dataclass(frozen=True)
class LoadedModel:
    predictor: Predictor
    sha256: str
    baseline: Baseline | None = None


class LoadFailure(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ServeOutcome:
    exit_code: int
    handed_over: LoadedModel | None = None  # the loading phase of --workers N ended


def run_worker(
    config: ServerConfig,
    sockets: list[socket.socket],
    worker_index: int,
    snapshot_dir: Path | None,
    preloaded: LoadedModel | None = None,
    hand_over: bool = False,
) -> ServeOutcome:
    """Serve until SIGTERM; with `hand_over`, only until the model has loaded."""
    _limit_native_threads()
    loop = _new_event_loop()
    try:
        return loop.run_until_complete(
            _serve(config, sockets, worker_index, snapshot_dir, preloaded, hand_over)
        )
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
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
    preloaded: LoadedModel | None,
    hand_over: bool,
) -> ServeOutcome:
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
    capture = _capture_writer(config, worker_index)
    service = InferenceService(settings, loop.call_soon, peers.read, capture)
    if preloaded is not None:
        service.model_loaded(preloaded.predictor, preloaded.sha256, preloaded.baseline)
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
    who = {"worker": worker_index}
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        log.info("listening", extra={"address": f"{host}:{port}", **who})

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    publisher = asyncio.create_task(peers.publish_forever(service)) if snapshot_dir else None

    exit_code = 0
    stop_wait = asyncio.create_task(stop.wait())
    if preloaded is None:
        loader: asyncio.Future[LoadedModel] = loop.run_in_executor(None, _load, config)
        waiting: set[asyncio.Future[Any]] = {stop_wait, loader}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if loader.done():
            try:
                loaded = loader.result()
            except LoadFailure as failure:
                log.error("model not loaded; staying NotReady", extra={"reason": failure.reason})
                service.model_failed(failure.reason)
                if config.exit_on_load_failure:
                    exit_code = 1
                    stop.set()
            else:
                service.model_loaded(loaded.predictor, loaded.sha256, loaded.baseline)
                if hand_over:
                    # The workers take over the listening sockets from here on.
                    await drain(servers, registry, config.drain_timeout_seconds)
                    stop_wait.cancel()
                    if capture is not None:  # feedback sent while loading
                        await loop.run_in_executor(None, capture.close, 5.0)
                    return ServeOutcome(0, handed_over=loaded)
    await stop_wait  # serve (or stay NotReady with the reason) until told to stop

    log.info("shutting down: readiness false, draining", extra=who)
    service.start_draining()
    # Kept-alive clients are told to reconnect (Connection: close on their next answer), so
    # they reach the pods that stay, through the Service, once it has dropped this one.
    registry.close_idle()
    if exit_code == 0:
        if config.drain_delay_seconds > 0:
            await asyncio.sleep(config.drain_delay_seconds)
        if config.drain_quiet_seconds > 0 and not await wait_for_quiet(
            registry, config.drain_quiet_seconds, config.drain_timeout_seconds
        ):
            log.warning("clients still connecting when the drain timeout ended", extra=who)
    drain_started = time.monotonic()
    if not await drain(servers, registry, config.drain_timeout_seconds):
        log.warning("drain timed out with connections still open", extra=who)
    if capture is not None:
        # What is queued is written within what is left of the drain budget (at least 2 s).
        budget = max(2.0, config.drain_timeout_seconds - (time.monotonic() - drain_started))
        await loop.run_in_executor(None, capture.close, budget)
    if publisher is not None:
        publisher.cancel()
        peers.publish(service)
    log.info("stopped", extra={**who, "exit_code": exit_code})
    return ServeOutcome(exit_code)


def _capture_writer(config: ServerConfig, worker_index: int) -> CaptureWriter | None:
    if config.capture is None:
        return None
    pod = config.capture.pod
    if worker_index < 0:
        pod = f"{pod}-loader"
    elif config.workers > 1:
        pod = f"{pod}-w{worker_index}"
    writer = CaptureWriter(
        config.capture,
        model=config.model_name,
        version=config.model_version,
        track=config.track,
        pod=pod,
    )
    writer.start()
    return writer


def _load(config: ServerConfig) -> LoadedModel:
    """Fetch, verify, deserialise and warm up the model (runs in a thread)."""
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
        predictor.predict(predictor.warmup_features())  # warm-up
        baseline = None
        if config.baseline_uri and config.baseline_sha256:
            baseline = load_baseline(config.baseline_uri, config.baseline_sha256)
    except ArtifactError as exc:
        raise LoadFailure(f"{exc.reason}: {exc}") from exc
    except Exception as exc:
        raise LoadFailure(f"ModelError: {exc}") from exc
    log.info(
        "model loaded; ready",
        extra={
            "model": config.model_name,
            "version": config.model_version,
            "sha256": artifact.sha256,
            "bytes": artifact.size,
            "estimator": type(artifact.estimator).__name__,
            "fast_path": predictor.fast_path,
            "fast_path_kind": predictor.fast_path_kind,
            "seconds": round(time.monotonic() - started, 3),
            "baseline_features": len(baseline.features) if baseline is not None else None,
        },
    )
    return LoadedModel(predictor, artifact.sha256, baseline)


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


_SNAPSHOT_FIELDS = frozenset(MetricsSnapshot.__dataclass_fields__)


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
                raw = {k: v for k, v in raw.items() if k in _SNAPSHOT_FIELDS}
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
    """Load once while answering probes, then fork workers that share the sockets.

    Loading before forking means every worker is ready the moment it accepts a
    connection (readiness is never true for a pod with a loading worker), and the
    workers share the model's memory copy-on-write.
    """
    loading = run_worker(
        config, [sock.dup() for sock in sockets], -1, None, preloaded=None, hand_over=True
    )
    if loading.handed_over is None:
        return loading.exit_code  # stopped while loading, or failed to load
    snapshot_dir = Path(tempfile.mkdtemp(prefix="kiln-serve-metrics-"))
    children: dict[int, int] = {}
    for index in range(config.workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = run_worker(
                    config, sockets, index, snapshot_dir, preloaded=loading.handed_over
                ).exit_code
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
