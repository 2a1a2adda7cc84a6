"""Routing and the inference queue: what each Open Inference Protocol endpoint answers.

Independent of the socket layer: a request comes in as (method, path, headers, body),
an answer goes out through a `reply(status, body, headers)` callback. Inference
requests are validated at once and queued; all requests queued during one turn of the
event loop are predicted together in one call (row-wise estimators give the same
answers batched or not, and one numpy call is far cheaper than many). The queue is
bounded in count (`max_pending`) and in estimated work (`max_queue_seconds`, from a
moving average of what a queued request costs to answer, so the bound holds for fast
and slow models alike): beyond either, the server sheds load with 503 at once instead
of letting latency grow.
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import orjson

from kiln.contract.monitoring import INFERENCE_ID_HEADER, Baseline
from kiln.server.capture import CaptureWriter, column_layout
from kiln.server.drift import DriftPlan, compile_drift
from kiln.server.predictor import Predictor, drift_feature_names
from kiln.server.protocol import (
    PROBA_OUTPUT,
    InferRequest,
    ProtocolError,
    encode_infer_response,
    error_body,
    parse_infer_request,
)
from kiln.server.telemetry import (
    MetricLabels,
    MetricsSnapshot,
    ServingMetrics,
    TabularLayout,
    render,
)
from kiln.tabular.schema import TabularSchema
from kiln.version import KILN_VERSION

log = logging.getLogger("kiln.server")

Reply = Callable[[int, bytes, tuple[tuple[str, str], ...]], None]
JSON = "application/json"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
_NO_HEADERS: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ServiceSettings:
    model_name: str
    model_version: str
    track: str
    max_pending: int = 1024
    max_queue_seconds: float = 0.05
    max_body_bytes: int = 8 << 20
    serve_metrics: bool = True


@dataclass(slots=True)
class _Pending:
    request: InferRequest
    reply: Reply
    received_at: float
    request_id: str


class InferenceService:
    """One worker's view of the model: readiness, routes, and the batched predict queue."""

    def __init__(
        self,
        settings: ServiceSettings,
        schedule: Callable[[Callable[[], None]], Any],
        peer_snapshots: Callable[[], list[MetricsSnapshot]] = list,
        capture: CaptureWriter | None = None,
    ) -> None:
        self.settings = settings
        self.capture = capture
        self._schedule = schedule
        self._peer_snapshots = peer_snapshots
        self.labels = MetricLabels(settings.model_name, settings.model_version, settings.track)
        self.metrics = ServingMetrics(self.labels)
        if capture is not None:
            self.metrics.attach_capture(capture.counts)
        self.predictor: Predictor | None = None
        self.sha256: str | None = None
        self.not_ready_reason = "model is loading"
        self.draining = False
        self._pending: list[_Pending] = []
        self._flush_scheduled = False
        self._seconds_per_request = 0.0  # moving average of a flush's cost per request
        self._model_prefix = "/v2/models/" + settings.model_name
        self._version_prefix = f"{self._model_prefix}/versions/{settings.model_version}"

    # -- lifecycle -----------------------------------------------------------------------

    def model_loaded(
        self, predictor: Predictor, sha256: str, baseline: Baseline | None = None
    ) -> None:
        self.predictor = predictor
        self.sha256 = sha256
        if predictor.tabular is not None:
            # Drift statistics for the numeric columns; text columns count missing values
            # and unseen categories instead.
            names = drift_feature_names(predictor.tabular)
        else:
            names = predictor.schema.feature_names or tuple(
                f"f{index}" for index in range(predictor.schema.n_features)
            )
        self.metrics.configure_model(names, predictor.classes, predictor.layout)
        inputs, kinds = input_columns(predictor)
        if baseline is not None:
            plan = compile_drift(baseline, inputs, kinds, predictor.classes)
            self.metrics.configure_drift(plan)
        else:
            self.metrics.configure_drift(None)
        if self.capture is not None:
            texts = kinds is not None and any(k not in ("numeric", "boolean") for k in kinds)
            self.capture.set_columns(column_layout(inputs, kinds, texts))
        self.not_ready_reason = ""

    def model_failed(self, reason: str) -> None:
        self.predictor = None
        self.not_ready_reason = reason

    def start_draining(self) -> None:
        """Readiness turns false first, so load balancers stop sending new traffic."""
        self.draining = True

    @property
    def ready(self) -> bool:
        return self.predictor is not None and not self.draining

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- scrape source (kiln.server.telemetry.ExpositionSource) ----------------------------

    def feature_names(self) -> tuple[str, ...]:
        return self.metrics.feature_names

    def class_labels(self) -> tuple[str, ...] | None:
        return self.metrics.class_labels

    def tabular_layout(self) -> TabularLayout | None:
        return self.metrics.layout

    def merged_snapshot(self) -> MetricsSnapshot:
        merged = self.metrics.snapshot()
        for snapshot in self._peer_snapshots():
            merged.merge(snapshot)
        return merged

    def is_ready(self) -> bool:
        return self.ready

    def drift_plan(self) -> DriftPlan | None:
        return self.metrics.drift

    def capture_enabled(self) -> bool:
        return self.capture is not None

    # -- routing -------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        reply: Reply,
        received_at: float,
    ) -> None:
        path = target.split("?", 1)[0]
        if "%" in path:
            path = unquote(path)
        if path.endswith("/infer"):
            if method != "POST":
                return _method_not_allowed(reply, "POST")
            return self._infer(path[: -len("/infer")], headers, body, reply, received_at)
        if path.endswith("/feedback"):
            if method != "POST":
                return _method_not_allowed(reply, "POST")
            return self._feedback(path[: -len("/feedback")], body, reply)
        if method not in ("GET", "HEAD"):
            if self._is_known_get_path(path):
                return _method_not_allowed(reply, "GET")
            return _json(reply, 404, {"error": f"no route for {method} {path}"})
        self._get(path, reply)

    def _is_known_get_path(self, path: str) -> bool:
        return path in ("/v2", "/v2/health/live", "/v2/health/ready", "/metrics") or (
            path.startswith("/v2/models/")
        )

    def _get(self, path: str, reply: Reply) -> None:
        if path == "/v2/health/live":
            return _json(reply, 200, {"live": True})
        if path == "/v2/health/ready":
            if self.ready:
                return _json(reply, 200, {"ready": True})
            return _json(reply, 503, {"ready": False, "error": self._unready_text()})
        if path == "/v2":
            return _json(reply, 200, self._server_metadata())
        if path == "/metrics" and self.settings.serve_metrics:
            return reply(200, render(self), (("content-type", PROMETHEUS_TEXT),))
        if path.startswith("/v2/models/"):
            return self._model_get(path, reply)
        _json(reply, 404, {"error": f"no route for GET {path}"})

    def _model_get(self, path: str, reply: Reply) -> None:
        readiness = path.endswith("/ready")
        base = path[: -len("/ready")] if readiness else path
        if base not in (self._model_prefix, self._version_prefix):
            return self._unknown_model(base, reply)
        if readiness:
            status = 200 if self.ready else 503
            body = {
                "name": self.settings.model_name,
                "version": self.settings.model_version,
                "ready": self.ready,
            }
            return _json(reply, status, body)
        if self.predictor is None:
            return _json(reply, 503, {"error": self._unready_text()})
        _json(reply, 200, self._model_metadata(self.predictor))

    def _unknown_model(self, base: str, reply: Reply) -> None:
        if base.startswith(self._model_prefix + "/versions/"):
            version = base[len(self._model_prefix + "/versions/") :]
            return _json(
                reply,
                404,
                {
                    "error": f"model {self.settings.model_name!r} has no version {version!r}; "
                    f"this server serves version {self.settings.model_version!r}"
                },
            )
        name = base[len("/v2/models/") :].split("/", 1)[0]
        _json(reply, 404, {"error": f"unknown model {name!r}"})

    def _unready_text(self) -> str:
        if self.draining:
            return "server is shutting down"
        return self.not_ready_reason

    def _server_metadata(self) -> dict[str, Any]:
        return {
            "name": "kiln-serve",
            "version": KILN_VERSION,
            "extensions": ["binary_tensor_data"],
        }

    def _model_metadata(self, predictor: Predictor) -> dict[str, Any]:
        schema = predictor.schema
        outputs: list[dict[str, Any]] = [
            {"name": "predict", "datatype": predictor.predict_datatype, "shape": [-1]}
        ]
        if "predict_proba" in predictor.available_outputs and predictor.classes is not None:
            outputs.append(
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(predictor.classes)]}
            )
        if schema.columns is not None:
            inputs = column_inputs_metadata(schema.columns)
        else:
            inputs = [{"name": "input-0", "datatype": "FP64", "shape": [-1, schema.n_features]}]
        metadata: dict[str, Any] = {
            "name": self.settings.model_name,
            "versions": [self.settings.model_version],
            "platform": "scikit-learn",
            "inputs": inputs,
            "outputs": outputs,
        }
        parameters: dict[str, Any] = {"track": self.settings.track, "sha256": self.sha256}
        if schema.feature_names is not None:
            parameters["feature_names"] = list(schema.feature_names)
        if predictor.classes is not None:
            parameters["classes"] = list(predictor.classes)
        metadata["parameters"] = parameters
        return metadata

    # -- inference -----------------------------------------------------------------------

    def _infer(
        self,
        base: str,
        headers: dict[str, str],
        body: bytes,
        reply: Reply,
        received_at: float,
    ) -> None:
        if base not in (self._model_prefix, self._version_prefix):
            return self._finish_error(reply, received_at, 404, self._unknown_model_text(base))
        predictor = self.predictor
        if predictor is None:
            text = f"model not ready: {self._unready_text()}"
            return self._finish_error(reply, received_at, 503, text)
        queued = len(self._pending)
        if (
            queued >= self.settings.max_pending
            or queued * self._seconds_per_request > self.settings.max_queue_seconds
        ):
            return self._finish_error(
                reply, received_at, 503, "server overloaded; retry later", (("retry-after", "1"),)
            )
        try:
            body = _decoded_body(
                body, headers.get("content-encoding"), self.settings.max_body_bytes
            )
            header_length = _header_length(headers)
            request = parse_infer_request(
                body, predictor.schema, predictor.available_outputs, header_length
            )
        except ProtocolError as exc:
            return self._finish_error(reply, received_at, exc.status, exc.message)
        except Exception as exc:  # bad input must never become a 500
            log.warning("unexpected failure parsing an inference request: %r", exc)
            return self._finish_error(reply, received_at, 400, f"invalid request: {exc}")
        request_id = request.request_id or headers.get(INFERENCE_ID_HEADER) or uuid.uuid4().hex
        self._pending.append(_Pending(request, reply, received_at, request_id))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._schedule(self._flush)

    def _unknown_model_text(self, base: str) -> str:
        name = (
            base[len("/v2/models/") :].split("/", 1)[0] if base.startswith("/v2/models/") else base
        )
        if name == self.settings.model_name:
            return f"model {name!r} has no such version; serving {self.settings.model_version!r}"
        return f"unknown model {name!r}"

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        started = time.perf_counter()
        self._answer(batch)
        cost = (time.perf_counter() - started) / len(batch)
        previous = self._seconds_per_request or cost
        self._seconds_per_request = 0.8 * previous + 0.2 * cost

    def _answer(self, batch: list[_Pending]) -> None:
        predictor = self.predictor
        if predictor is None:
            for item in batch:
                self._finish_error(item.reply, item.received_at, 503, "model was unloaded")
            return
        if len(batch) == 1:
            self._predict_each(predictor, batch)
            return
        features = np.concatenate([item.request.features for item in batch])
        try:
            prediction = predictor.predict(features)
        except Exception:
            # Find out which request the model rejected instead of failing them all.
            self._predict_each(predictor, batch)
            return
        self.metrics.observe_rows(features, prediction.class_indices, prediction.values)
        start = 0
        for item in batch:
            rows = item.request.features.shape[0]
            self._respond(predictor, item, prediction.values[start : start + rows])
            start += rows

    def _predict_each(self, predictor: Predictor, batch: list[_Pending]) -> None:
        for item in batch:
            try:
                prediction = predictor.predict(item.request.features)
            except ValueError as exc:  # the estimator's own input validation
                self._finish_error(
                    item.reply, item.received_at, 400, f"model rejected input: {exc}"
                )
                continue
            except Exception as exc:
                log.exception("prediction failed")
                self._finish_error(item.reply, item.received_at, 500, f"prediction failed: {exc}")
                continue
            self.metrics.observe_rows(
                item.request.features, prediction.class_indices, prediction.values
            )
            self._respond(predictor, item, prediction.values)

    def _respond(self, predictor: Predictor, item: _Pending, values: np.ndarray) -> None:
        request = item.request
        request_id = item.request_id
        try:
            names = [output.name for output in request.outputs]
            tensors = predictor.outputs(request.features, values, names)
            body, header_length = encode_infer_response(
                self.settings.model_name,
                self.settings.model_version,
                request_id,
                [
                    (tensor, output.binary)
                    for tensor, output in zip(tensors, request.outputs, strict=True)
                ],
            )
        except Exception as exc:
            log.exception("encoding the response failed")
            self._finish_error(item.reply, item.received_at, 500, f"prediction failed: {exc}")
            return
        id_header = (INFERENCE_ID_HEADER, _header_safe(request_id))
        if header_length is None:
            item.reply(200, body, (id_header,))
        else:
            item.reply(
                200,
                body,
                (
                    ("content-type", "application/octet-stream"),
                    ("inference-header-content-length", str(header_length)),
                    id_header,
                ),
            )
        self.metrics.observe_request(200, time.perf_counter() - item.received_at)
        capture = self.capture
        if capture is not None and capture.wants(request_id):
            proba = next((t.values for t in tensors if t.name == PROBA_OUTPUT), None)
            capture.offer_predictions(request_id, request.features, values, proba)

    # -- ground truth ----------------------------------------------------------------------

    def _feedback(self, base: str, body: bytes, reply: Reply) -> None:
        if base not in (self._model_prefix, self._version_prefix):
            return _json(reply, 404, {"error": self._unknown_model_text(base)})
        capture = self.capture
        if capture is None:
            return _json(
                reply,
                409,
                {
                    "error": "data capture is off on this server (no capture destination is "
                    "configured), so feedback labels cannot be recorded; enable capture on "
                    "the ModelDeployment"
                },
            )
        try:
            labels = parse_feedback(body)
        except ProtocolError as exc:
            return _json(reply, exc.status, {"error": exc.message})
        if not capture.offer_feedback(labels):
            return reply(
                503,
                error_body("capture queue is full; labels not accepted, retry later"),
                (("retry-after", "1"),),
            )
        self.metrics.observe_feedback(len(labels))
        _json(reply, 200, {"accepted": len(labels)})

    def _finish_error(
        self,
        reply: Reply,
        received_at: float,
        status: int,
        message: str,
        headers: tuple[tuple[str, str], ...] = _NO_HEADERS,
    ) -> None:
        reply(status, error_body(message), headers)
        self.metrics.observe_request(status, time.perf_counter() - received_at)


_COLUMN_DATATYPES = {
    "numeric": "FP64",
    "boolean": "BOOL",
    "categorical": "BYTES",
    "datetime": "BYTES",
}


def column_inputs_metadata(tabular: TabularSchema) -> list[dict[str, Any]]:
    """One input per raw column: its datatype, and what the column is (type, missing…)."""
    inputs: list[dict[str, Any]] = []
    for column in tabular.columns:
        parameters: dict[str, Any] = {"type": column.kind, "nullable": column.nullable}
        if column.categories is not None:
            parameters["categories"] = list(column.categories)
        inputs.append(
            {
                "name": column.name,
                "datatype": _COLUMN_DATATYPES[column.kind],
                "shape": [-1],
                "parameters": parameters,
            }
        )
    return inputs


MAX_ID_LENGTH = 256


def parse_feedback(body: bytes) -> list[tuple[str, int, Any]]:
    """`{"labels": [{"id", "row"?, "label"}, …]}` or one `{"id", "row"?, "label"}`."""
    try:
        document = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ProtocolError('feedback must be a JSON object: {"labels": [{"id", "label"}, …]}')
    if "labels" in document:
        items = document["labels"]
        if not isinstance(items, list) or not items:
            raise ProtocolError("'labels' must be a non-empty list of {id, row, label} objects")
        where = [f"labels[{index}]" for index in range(len(items))]
    elif "id" in document or "label" in document:
        items, where = [document], ["feedback"]
    else:
        raise ProtocolError("feedback needs 'labels' (a list) or one object with 'id' and 'label'")
    labels: list[tuple[str, int, Any]] = []
    for item, at in zip(items, where, strict=True):
        if not isinstance(item, dict):
            raise ProtocolError(f"{at} must be an object with 'id' and 'label'")
        request_id = item.get("id")
        if not isinstance(request_id, str) or not request_id:
            raise ProtocolError(f"{at}.id must be a non-empty string (the inference id)")
        if len(request_id) > MAX_ID_LENGTH:
            raise ProtocolError(f"{at}.id is longer than {MAX_ID_LENGTH} characters")
        row = item.get("row", 0)
        if type(row) is not int or row < 0:
            raise ProtocolError(f"{at}.row must be a non-negative integer (default 0)")
        if "label" not in item or item["label"] is None:
            raise ProtocolError(f"{at}.label is required")
        label = item["label"]
        if not isinstance(label, str | int | float):
            raise ProtocolError(f"{at}.label must be a string, number or boolean")
        labels.append((request_id, row, label))
    return labels


def input_columns(predictor: Predictor) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """The request matrix's column names (and kinds, for a tabular model)."""
    tabular = predictor.tabular
    if tabular is not None:
        return tabular.names, tuple(column.kind for column in tabular.columns)
    schema = predictor.schema
    names = schema.feature_names or tuple(f"f{index}" for index in range(schema.n_features))
    return names, None


def _header_safe(value: str) -> str:
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="")


def _decoded_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo gzip/deflate request compression (tritonclient can send it), within `limit`."""
    if encoding is None or encoding.strip().lower() in ("", "identity"):
        return body
    kind = encoding.strip().lower()
    if kind not in ("gzip", "deflate"):
        raise ProtocolError(f"Content-Encoding {encoding!r} is not supported", status=415)
    decompressor = zlib.decompressobj(wbits=31 if kind == "gzip" else 15)
    try:
        data = decompressor.decompress(body, limit)
    except zlib.error as exc:
        raise ProtocolError(f"request body is not valid {kind}: {exc}") from None
    if decompressor.unconsumed_tail:
        raise ProtocolError(f"decompressed request body larger than {limit} bytes", status=413)
    return data


def _header_length(headers: dict[str, str]) -> int | None:
    raw = headers.get("inference-header-content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ProtocolError("Inference-Header-Content-Length must be an integer") from None


def _json(reply: Reply, status: int, document: dict[str, Any]) -> None:
    reply(status, orjson.dumps(document), _NO_HEADERS)


def _method_not_allowed(reply: Reply, allowed: str) -> None:
    reply(405, error_body(f"method not allowed; use {allowed}"), (("allow", allowed),))
