"""Data capture: predicted rows and feedback labels written to S3 as JSON Lines objects.

The request path only decides whether a request is sampled and appends a reference to
its (already computed) arrays to a bounded in-memory queue; a background thread turns
queued requests into `kiln.contract.monitoring.PredictionRecord` / `FeedbackRecord`
lines and writes one object per `max_records` records or `flush_seconds`, whichever
comes first, at `contract.object_key(...)`.

Capture never blocks or fails a request:
- the queue is bounded in records; a request that does not fit is dropped whole and its
  rows are counted `dropped`;
- when a write fails (the store is down) the writer keeps the batch and retries it with
  back-off (0.5 s doubling to 30 s) under the same key, so a retried write can never
  leave a duplicate object; meanwhile the queue fills and further records are dropped
  (counted), and capture resumes by itself when the store answers again;
- records count as `written` only once their object's put succeeded; records that
  cannot be serialised, or that are still unwritten when a shutdown's time runs out,
  count as `failed`.

Memory is bounded by the queue (`queue_records`) plus at most one object per kind being
assembled or retried. Each worker process has its own queue and writer; the key's pod
part (`<pod>-w<index>` with several workers) keeps their objects apart.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import orjson

from kiln.contract.monitoring import RecordKind, object_key
from kiln.server.config import CaptureConfig

log = logging.getLogger("kiln.server")

CONTENT_TYPE = "application/x-ndjson"
POLL_SECONDS = 0.05  # how often the writer looks at the queue
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
SLICE_RECORDS = 64  # records serialised per slice of the writer's work (~0.3 ms)
SLICE_PAUSE_SECONDS = 0.0002  # between slices: the event loop's thread runs freely
# While the writer thread runs Python, the event loop's thread waits up to this long
# for the GIL after each of its socket calls (CPython's default is 5 ms).
SWITCH_INTERVAL_SECONDS = 0.0005


class Store(Protocol):
    def put(self, uri: str, data: bytes, *, content_type: str = ...) -> Any: ...


@dataclass(frozen=True)
class ColumnLayout:
    """How to write a request matrix's columns: names, and which hold booleans/text."""

    names: tuple[str, ...]
    booleans: frozenset[int] = frozenset()
    objects: bool = False  # an object matrix (tabular with text columns)


@dataclass(slots=True)
class _Predictions:
    request_id: str
    at: float
    features: np.ndarray
    values: np.ndarray
    probabilities: np.ndarray | None
    rows: int


@dataclass(slots=True)
class _Feedback:
    at: float
    labels: list[tuple[str, int, Any]]
    rows: int


@dataclass
class _Batch:
    kind: RecordKind
    lines: list[bytes] = field(default_factory=list)
    first: float = 0.0  # epoch seconds of its first record
    opened: float = 0.0  # monotonic time the first record arrived


def sampled(request_id: str, rate: float) -> bool:
    """Deterministic per id: the same id is always in (or out of) a given sample."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return zlib.crc32(request_id.encode()) < rate * 4294967296.0


class CaptureWriter:
    """One worker's capture queue and the thread that writes it out."""

    def __init__(
        self,
        config: CaptureConfig,
        *,
        model: str,
        version: str,
        track: str,
        pod: str,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._model, self._version, self._track, self._pod = model, version, track, pod
        self._store = store
        self._clock = clock
        self._queue: deque[_Predictions | _Feedback] = deque()
        self._queued = 0  # records in the queue
        self._lock = threading.Lock()
        self._counts = {"written": 0, "dropped": 0, "failed": 0}
        self._columns = ColumnLayout(())
        self._sequence = 0
        self._stop = threading.Event()
        self._deadline = float("inf")  # monotonic: give up retrying (shutdown)
        self._thread: threading.Thread | None = None
        self._stamp_second = -1
        self._stamp_prefix = ""
        self._batches: dict[RecordKind, _Batch] = {
            "predictions": _Batch("predictions"),
            "feedback": _Batch("feedback"),
        }

    # -- the request path (event loop thread) --------------------------------------------

    def set_columns(self, columns: ColumnLayout) -> None:
        self._columns = columns

    def wants(self, request_id: str) -> bool:
        return sampled(request_id, self.config.sample_rate)

    def offer_predictions(
        self,
        request_id: str,
        features: np.ndarray,
        values: np.ndarray,
        probabilities: np.ndarray | None,
    ) -> bool:
        """Queue a predicted request's rows (references only); False when dropped."""
        rows = int(features.shape[0])
        item = _Predictions(request_id, self._clock(), features, values, probabilities, rows)
        return self._offer(item, rows)

    def offer_feedback(self, labels: list[tuple[str, int, Any]]) -> bool:
        """Queue feedback labels, all or none (the caller answers 503 when none)."""
        return self._offer(_Feedback(self._clock(), labels, len(labels)), len(labels), True)

    def _offer(self, item: _Predictions | _Feedback, rows: int, refuse: bool = False) -> bool:
        with self._lock:
            if self._queued + rows > self.config.queue_records:
                if not refuse:
                    self._counts["dropped"] += rows
                return False
            self._queued += rows
            self._queue.append(item)
        return True

    def counts(self) -> tuple[dict[str, int], int]:
        with self._lock:
            return dict(self._counts), self._queued

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        import sys

        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))
        self._thread = threading.Thread(target=self._run, name="kiln-capture", daemon=True)
        self._thread.start()

    def close(self, timeout: float) -> None:
        """Write what is queued (retrying until `timeout`), then stop the thread."""
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
                self._stop.wait(POLL_SECONDS)
            self._step(final=True)
        except Exception:  # never let the thread die silently
            log.exception("capture writer stopped")

    def _step(self, final: bool = False) -> None:
        """Move queued records into batches, writing each batch that is full or due.

        Work is done in slices of about `SLICE_RECORDS` records with a short sleep between
        them: the writer thread holds the GIL for a fraction of a millisecond at a time,
        so a backlog never stalls the event loop's thread (which needs the GIL back after
        each of its socket calls) for longer.
        """
        while True:
            # Never take more than fills the fuller batch, so a writer stuck retrying holds
            # at most one object per kind beside the bounded queue.
            room = self.config.max_records - max(len(b.lines) for b in self._batches.values())
            items = self._take(max(1, min(room, SLICE_RECORDS)))
            if not items:
                break
            predictions = [item for item in items if isinstance(item, _Predictions)]
            if predictions:
                self._add(self._batches["predictions"], predictions[0].at,
                          self._serialise_predictions(predictions))  # fmt: skip
            for item in items:
                if isinstance(item, _Feedback):
                    self._add(self._batches["feedback"], item.at, self._feedback_lines(item))
            for batch in self._batches.values():
                while len(batch.lines) >= self.config.max_records:
                    if not self._write(batch, self.config.max_records):
                        return self._give_up()
            if self._queue and not final:
                time.sleep(SLICE_PAUSE_SECONDS)
        for batch in self._batches.values():
            due = final or time.monotonic() - batch.opened >= self.config.flush_seconds
            if batch.lines and due and not self._write(batch, len(batch.lines)):
                return self._give_up()

    @staticmethod
    def _add(batch: _Batch, at: float, lines: list[bytes]) -> None:
        if lines and not batch.lines:
            batch.first, batch.opened = at, time.monotonic()
        batch.lines.extend(lines)

    def _take(self, records: int) -> list[_Predictions | _Feedback]:
        """Queued items holding about `records` records (at least one item)."""
        taken: list[_Predictions | _Feedback] = []
        count = 0
        with self._lock:
            queue = self._queue
            while queue and (count < records or not taken):
                item = queue.popleft()
                taken.append(item)
                count += item.rows
            self._queued -= count
        return taken

    def _past_deadline(self) -> bool:
        return time.monotonic() >= self._deadline

    def _give_up(self) -> None:
        lost = sum(len(b.lines) for b in self._batches.values())
        with self._lock:
            lost += self._queued
            self._queue.clear()
            self._queued = 0
            self._counts["failed"] += lost
        for batch in self._batches.values():
            batch.lines.clear()
        if lost:
            log.error("capture records not written before shutdown", extra={"records": lost})

    def _write(self, batch: _Batch, count: int) -> bool:
        """Put the first `count` lines as one object, retrying with back-off.

        Returns False only when the store still refuses at the deadline (shutdown) or the
        writer is asked to stop while still retrying past it.
        """
        at = datetime.fromtimestamp(batch.first, UTC)
        key = object_key(
            self.config.destination,
            self.config.namespace,
            self.config.deployment,
            batch.kind,
            at,
            self._pod,
            self._sequence,
        )
        body = b"\n".join(batch.lines[:count]) + b"\n"
        delay = RETRY_FIRST_SECONDS
        failures = 0
        while True:
            try:
                self._object_store().put(key, body, content_type=CONTENT_TYPE)
                break
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "capture write failed; keeping the batch and retrying",
                        extra={"key": key, "records": count, "error": str(exc)},
                    )
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    return False
                # While waiting, the request path keeps queueing (and dropping when full).
                if self._stop.is_set():
                    time.sleep(min(delay, remaining))
                else:
                    self._stop.wait(min(delay, remaining))
                delay = min(delay * 2, RETRY_MAX_SECONDS)
        self._sequence += 1
        del batch.lines[:count]
        if batch.lines:
            batch.opened = time.monotonic()
        with self._lock:
            self._counts["written"] += count
        if failures:
            log.info("capture writes resumed", extra={"key": key, "attempts": failures + 1})
        return True

    def _object_store(self) -> Store:
        if self._store is None:
            from kiln.store import ObjectStore

            self._store = ObjectStore()
        return self._store

    def _feedback_lines(self, item: _Feedback) -> list[bytes]:
        stamp = self._stamp(item.at)
        try:
            return [
                orjson.dumps({"id": i, "row": r, "time": stamp, "label": label})
                for i, r, label in item.labels
            ]
        except Exception as exc:
            return self._unserialisable(exc, item.rows)

    def _unserialisable(self, exc: Exception, rows: int) -> list[bytes]:
        log.warning("capture record not serialisable; counted failed: %r", exc)
        with self._lock:
            self._counts["failed"] += rows
        return []

    def _serialise_predictions(self, items: list[_Predictions]) -> list[bytes]:
        """Lines of several requests, their arrays joined so numpy converts them at once."""
        first = items[0]
        alike = all(
            item.features.dtype == first.features.dtype
            and item.features.shape[1] == first.features.shape[1]
            and item.values.dtype == first.values.dtype
            and (item.probabilities is None) == (first.probabilities is None)
            for item in items
        )
        if len(items) > 1 and alike:
            try:
                return self._prediction_lines(items)
            except Exception:  # one bad request: find it below, count only its rows
                pass
        lines: list[bytes] = []
        for item in items:
            try:
                lines += self._prediction_lines([item])
            except Exception as exc:
                self._unserialisable(exc, item.rows)
        return lines

    def _prediction_lines(self, items: list[_Predictions]) -> list[bytes]:
        layout = self._columns
        if len(items) == 1:
            features, values, proba = items[0].features, items[0].values, items[0].probabilities
        else:
            features = np.concatenate([item.features for item in items])
            values = np.concatenate([item.values for item in items])
            proba = None
            if items[0].probabilities is not None:
                proba = np.concatenate([item.probabilities for item in items])
        width = features.shape[1]
        names = layout.names if len(layout.names) == width else tuple(f"f{i}" for i in range(width))
        rows = _input_rows(features, layout)
        predictions = values.tolist()
        probabilities = proba.tolist() if proba is not None else None
        dumps = orjson.dumps
        model, version, track = self._model, self._version, self._track
        lines: list[bytes] = []
        at = 0
        for item in items:
            stamp = self._stamp(item.at)
            request_id = item.request_id
            for row in range(item.rows):
                record: dict[str, Any] = {
                    "id": request_id,
                    "row": row,
                    "time": stamp,
                    "model": model,
                    "version": version,
                    "track": track,
                    "inputs": dict(zip(names, rows[at], strict=True)),
                    "prediction": predictions[at],
                }
                if probabilities is not None:
                    record["probabilities"] = probabilities[at]
                lines.append(dumps(record))
                at += 1
        return lines

    def _stamp(self, at: float) -> str:
        """RFC 3339 UTC time with microseconds; the date part is formatted once a second."""
        second = int(at)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp_prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._stamp_prefix}.{int((at - second) * 1e6):06d}Z"


def _input_rows(features: np.ndarray, layout: ColumnLayout) -> list[list[Any]]:
    """Row-wise JSON-ready values: missing (NaN) as None, booleans as true/false."""
    rows: list[list[Any]] = features.tolist()
    if features.dtype != object and not layout.booleans and not np.isnan(features).any():
        return rows  # the common case: finite numbers only
    booleans = layout.booleans
    return [
        [
            None if value is None or value != value else bool(value) if index in booleans else value
            for index, value in enumerate(row)
        ]
        for row in rows
    ]


def column_layout(
    names: Sequence[str], kinds: Sequence[str] | None, object_matrix: bool
) -> ColumnLayout:
    booleans = frozenset(i for i, kind in enumerate(kinds or ()) if kind == "boolean")
    return ColumnLayout(tuple(names), booleans, object_matrix)
