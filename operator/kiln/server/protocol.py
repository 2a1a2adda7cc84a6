"""Open Inference Protocol v2 (KServe / Triton) request decoding and response encoding.

Pure functions: bytes in, a validated float64 feature matrix out (or a `ProtocolError`
carrying the HTTP status and message), and predictions in, response bytes out.
Both the JSON tensor form and Triton's binary tensor extension (the
`Inference-Header-Content-Length` header) are understood, because `tritonclient`
sends binary tensors by default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

PREDICT_OUTPUT = "predict"
PROBA_OUTPUT = "predict_proba"

# The numeric tensor types a feature matrix can be built from. BOOL, BYTES and BF16 are
# valid protocol types but not model features, so they are refused with a 400.
NUMERIC_DATATYPES: Mapping[str, np.dtype[Any]] = {
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
}
_NARROW_INTEGER_TYPES = frozenset({"INT8", "INT16", "INT32", "UINT8", "UINT16", "UINT32"})
_MAX_DIMENSIONS = 8


class ProtocolError(Exception):
    """A request the protocol (or this model) cannot accept; maps to an HTTP 4xx."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class InputSchema:
    """What the model accepts: F features, optionally with names (for per-feature tensors)."""

    n_features: int
    feature_names: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A validated request: an [N, F] C-contiguous float64 matrix with finite values."""

    features: np.ndarray
    request_id: str | None
    outputs: tuple[RequestedOutput, ...]


@dataclass(frozen=True, slots=True)
class OutputTensor:
    name: str
    datatype: str
    values: np.ndarray


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def parse_infer_request(
    body: bytes,
    schema: InputSchema,
    available_outputs: frozenset[str],
    json_header_length: int | None = None,
) -> InferRequest:
    """Decode and validate an infer request body; raise `ProtocolError` for bad input."""
    if not body:
        raise ProtocolError("empty request body; expected an inference request JSON object")
    header_bytes, binary = _split_binary_extension(body, json_header_length)
    try:
        document = orjson.loads(header_bytes)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ProtocolError("request body must be a JSON object")

    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("'id' must be a string")
    parameters = _optional_object(document.get("parameters"), "parameters")
    binary_output_default = parameters.get("binary_data_output") is True

    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("'inputs' must be a non-empty list of tensors")
    # JSON `true`/`false` can only appear in the body as literals or inside strings, so
    # when neither occurs no boolean can hide in tensor data and the strict scan is skipped.
    may_contain_booleans = b"true" in header_bytes or b"false" in header_bytes
    tensors = _decode_tensors(inputs, binary, may_contain_booleans)
    features = _assemble_features(tensors, schema)
    outputs = _requested_outputs(document.get("outputs"), available_outputs, binary_output_default)
    return InferRequest(features=features, request_id=request_id, outputs=outputs)


def _split_binary_extension(body: bytes, json_header_length: int | None) -> tuple[bytes, bytes]:
    if json_header_length is None:
        return body, b""
    if json_header_length <= 0 or json_header_length > len(body):
        raise ProtocolError(
            f"Inference-Header-Content-Length {json_header_length} does not fit a "
            f"{len(body)}-byte body"
        )
    return body[:json_header_length], body[json_header_length:]


def _optional_object(value: object, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"'{field}' must be a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class _Tensor:
    name: str
    values: np.ndarray  # already reshaped to the declared shape


def _decode_tensors(inputs: list[Any], binary: bytes, may_contain_booleans: bool) -> list[_Tensor]:
    tensors: list[_Tensor] = []
    binary_offset = 0
    for index, raw in enumerate(inputs):
        if not isinstance(raw, dict):
            raise ProtocolError(f"inputs[{index}] must be a JSON object")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"inputs[{index}].name must be a non-empty string")
        datatype = raw.get("datatype")
        if not isinstance(datatype, str):
            raise ProtocolError(f"input '{name}': 'datatype' must be a string")
        dtype = NUMERIC_DATATYPES.get(datatype)
        if dtype is None:
            raise ProtocolError(
                f"input '{name}': datatype {datatype!r} is not supported; "
                f"use a numeric type such as FP32, FP64 or INT64"
            )
        shape = _shape(raw.get("shape"), name)
        expected_size = math.prod(shape)
        parameters = _optional_object(raw.get("parameters"), f"inputs[{index}].parameters")
        binary_size = parameters.get("binary_data_size")
        if binary_size is not None:
            values, binary_offset = _binary_tensor(
                name, dtype, binary, binary_offset, binary_size, expected_size
            )
        else:
            values = _json_tensor(name, datatype, dtype, raw.get("data"), shape, expected_size)
            if may_contain_booleans and _contains_boolean(raw.get("data")):
                raise ProtocolError(f"input '{name}': data must be numbers, not booleans")
        tensors.append(_Tensor(name=name, values=values.reshape(shape)))
    if binary_offset != len(binary):
        raise ProtocolError(
            f"binary payload has {len(binary) - binary_offset} bytes not claimed by any input"
        )
    return tensors


def _shape(raw: object, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw or len(raw) > _MAX_DIMENSIONS:
        raise ProtocolError(
            f"input '{name}': 'shape' must be a list of 1 to {_MAX_DIMENSIONS} dimensions"
        )
    for dim in raw:
        if type(dim) is not int or dim < 0:
            raise ProtocolError(f"input '{name}': shape {raw} must hold non-negative integers")
    return tuple(raw)


def _json_tensor(
    name: str,
    datatype: str,
    dtype: np.dtype[Any],
    data: object,
    shape: tuple[int, ...],
    expected_size: int,
) -> np.ndarray:
    if not isinstance(data, list):
        raise ProtocolError(f"input '{name}': 'data' must be a list of numbers")
    try:
        inferred = np.array(data)
    except (ValueError, OverflowError):
        raise ProtocolError(
            f"input '{name}': 'data' must be a flat or rectangular nested list of numbers"
        ) from None
    kind = inferred.dtype.kind
    if kind not in "iuf":
        raise ProtocolError(f"input '{name}': 'data' must contain only numbers")
    if inferred.size != expected_size:
        raise ProtocolError(
            f"input '{name}': shape {list(shape)} needs {expected_size} values, "
            f"'data' has {inferred.size}"
        )
    if inferred.ndim != 1 and inferred.shape != shape:
        raise ProtocolError(
            f"input '{name}': nested 'data' of shape {list(inferred.shape)} does not match "
            f"shape {list(shape)}"
        )
    if dtype.kind in "iu":
        if kind == "f":
            raise ProtocolError(f"input '{name}': {datatype} data must be integers")
        typed = inferred.astype(dtype)
        narrowed = datatype in _NARROW_INTEGER_TYPES or kind != dtype.kind
        if narrowed and not np.array_equal(typed, inferred):
            raise ProtocolError(f"input '{name}': values out of range for {datatype}")
        return typed
    # Rounding through the declared float type keeps FP32 semantics exact; a value the
    # type cannot hold becomes inf, which the finiteness check then refuses.
    with np.errstate(over="ignore"):
        return inferred.astype(dtype, copy=False)


def _binary_tensor(
    name: str,
    dtype: np.dtype[Any],
    binary: bytes,
    offset: int,
    size: object,
    expected_size: int,
) -> tuple[np.ndarray, int]:
    if type(size) is not int or size < 0:
        raise ProtocolError(f"input '{name}': binary_data_size must be a non-negative integer")
    if size != expected_size * dtype.itemsize:
        raise ProtocolError(
            f"input '{name}': binary_data_size {size} does not match shape "
            f"({expected_size} x {dtype.itemsize} bytes)"
        )
    end = offset + size
    if end > len(binary):
        raise ProtocolError(f"input '{name}': binary payload is shorter than binary_data_size")
    return np.frombuffer(binary, dtype=dtype, count=expected_size, offset=offset), end


def _contains_boolean(data: object) -> bool:
    if isinstance(data, bool):
        return True
    if isinstance(data, list):
        return any(_contains_boolean(item) for item in data)
    return False


def _assemble_features(tensors: list[_Tensor], schema: InputSchema) -> np.ndarray:
    names = schema.feature_names
    single = tensors[0] if len(tensors) == 1 else None
    if single is not None and (names is None or single.name not in names or len(names) == 1):
        matrix = _matrix_from_single_tensor(single, schema.n_features)
    else:
        matrix = _matrix_from_feature_tensors(tensors, schema)
    if matrix.shape[0] == 0:
        raise ProtocolError("the request holds no rows")
    matrix = np.ascontiguousarray(matrix, dtype=np.float64)
    if not np.isfinite(matrix).all():
        raise ProtocolError("feature values must be finite numbers")
    return matrix


def _matrix_from_single_tensor(tensor: _Tensor, n_features: int) -> np.ndarray:
    values = tensor.values
    if values.ndim == 1 and n_features == 1:
        return values.reshape(-1, 1)
    if values.ndim != 2 or values.shape[1] != n_features:
        raise ProtocolError(
            f"input '{tensor.name}': expected shape [N, {n_features}] "
            f"(N rows of {n_features} features), got {list(values.shape)}"
        )
    return values


def _matrix_from_feature_tensors(tensors: list[_Tensor], schema: InputSchema) -> np.ndarray:
    names = schema.feature_names
    if names is None:
        raise ProtocolError(
            f"this model has no feature names: send one tensor of shape [N, {schema.n_features}]"
        )
    by_name: dict[str, np.ndarray] = {}
    for tensor in tensors:
        if tensor.name in by_name:
            raise ProtocolError(f"input '{tensor.name}' is given twice")
        if tensor.name not in names:
            raise ProtocolError(f"input '{tensor.name}' is not a feature of this model")
        values = tensor.values
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise ProtocolError(
                f"input '{tensor.name}': a per-feature tensor must have shape [N] or [N, 1]"
            )
        by_name[tensor.name] = values
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ProtocolError(f"missing feature inputs: {', '.join(missing)}")
    rows = {len(column) for column in by_name.values()}
    if len(rows) != 1:
        raise ProtocolError("per-feature inputs must all have the same number of rows")
    return np.column_stack([by_name[name].astype(np.float64) for name in names])


def _requested_outputs(
    raw: object, available: frozenset[str], binary_default: bool
) -> tuple[RequestedOutput, ...]:
    if raw is None:
        return (RequestedOutput(PREDICT_OUTPUT, binary_default),)
    if not isinstance(raw, list) or not raw:
        raise ProtocolError("'outputs' must be a non-empty list when given")
    requested: list[RequestedOutput] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError(f"outputs[{index}] must be an object with a string 'name'")
        name = item["name"]
        if name not in available:
            raise ProtocolError(
                f"unknown output {name!r}; this model offers {', '.join(sorted(available))}"
            )
        parameters = _optional_object(item.get("parameters"), f"outputs[{index}].parameters")
        binary = parameters.get("binary_data", binary_default) is True
        requested.append(RequestedOutput(name, binary))
    return tuple(requested)


def encode_infer_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Sequence[tuple[OutputTensor, bool]],
) -> tuple[bytes, int | None]:
    """Encode outputs; returns (body, json header length when binary tensors follow)."""
    encoded: list[dict[str, Any]] = []
    payloads: list[bytes] = []
    for tensor, binary in outputs:
        values = tensor.values
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(values.shape),
        }
        if binary:
            payload = _binary_payload(tensor)
            entry["parameters"] = {"binary_data_size": len(payload)}
            payloads.append(payload)
        elif tensor.datatype == "BYTES":
            entry["data"] = [str(item) for item in values.ravel()]
        else:
            entry["data"] = values.ravel()
        encoded.append(entry)
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        document["id"] = request_id
    document["outputs"] = encoded
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not payloads:
        return header, None
    return header + b"".join(payloads), len(header)


def _binary_payload(tensor: OutputTensor) -> bytes:
    if tensor.datatype == "BYTES":
        # Triton's BYTES serialisation: each element as a 4-byte little-endian length + bytes.
        chunks: list[bytes] = []
        for item in tensor.values.ravel():
            raw = str(item).encode()
            chunks.append(len(raw).to_bytes(4, "little") + raw)
        return b"".join(chunks)
    dtype = NUMERIC_DATATYPES[tensor.datatype]
    return np.ascontiguousarray(tensor.values, dtype=dtype).tobytes()
