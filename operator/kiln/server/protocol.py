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

from kiln.tabular.coerce import categorical_values
from kiln.tabular.schema import ColumnSchema, TabularSchema

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
    """What the model accepts: F features, optionally with names (for per-feature tensors).

    A tabular model (trained by Kiln with its preparation pipeline) also has ``columns``:
    one typed input per raw column, strings, booleans and missing values allowed.
    """

    n_features: int
    feature_names: tuple[str, ...] | None = None
    columns: TabularSchema | None = None


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A validated request: an [N, F] C-contiguous matrix.

    float64 with finite values for a bare estimator; for a tabular model the canonical
    columns (kiln.tabular.coerce): float64 with NaN for missing when every column is
    numeric or boolean, else an object matrix.
    """

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
        # tritonclient (Python's json) writes a missing FP64 value as the literal NaN,
        # which strict JSON lacks; a tabular model reads it as missing.
        document = _json_with_nan(header_bytes) if schema.columns is not None else None
        if document is None:
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
    if schema.columns is not None:
        features = _tabular_features(inputs, binary, schema.columns, may_contain_booleans)
    else:
        tensors = _decode_tensors(inputs, binary, may_contain_booleans)
        features = _assemble_features(tensors, schema)
    outputs = _requested_outputs(document.get("outputs"), available_outputs, binary_output_default)
    return InferRequest(features=features, request_id=request_id, outputs=outputs)


def _json_with_nan(text: bytes) -> Any:
    import json

    if b"NaN" not in text and b"Infinity" not in text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


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


# --- tabular models: one typed input per column ------------------------------------------

_BINARY_BOOL = np.dtype("?")
_SINGLE_TENSOR_NUMERIC = frozenset(NUMERIC_DATATYPES)


def _tabular_features(
    inputs: list[Any], binary: bytes, schema: TabularSchema, may_contain_booleans: bool
) -> np.ndarray:
    """Named, typed column inputs (or one [N, F] tensor when every column is numeric)."""
    names = schema.names
    raw = _raw_inputs(inputs)
    if (
        len(raw) == 1
        and raw[0][0] not in names
        and schema.all_numeric
        and raw[0][1] in _SINGLE_TENSOR_NUMERIC
    ):
        return _single_numeric_tensor(raw[0], binary, schema, may_contain_booleans)
    by_column = {column.name: column for column in schema.columns}
    dropped = set(schema.dropped)
    decoded: dict[str, np.ndarray] = {}
    offset = 0
    for name, datatype, shape, data, binary_size in raw:
        column = by_column.get(name)
        if column is None:
            if name in dropped:  # known to the model, left out by its preparation
                offset = _skip_binary(name, binary, offset, binary_size)
                continue
            raise ProtocolError(
                f"input '{name}' is not a column of this model; it takes {', '.join(names)}"
            )
        if name in decoded:
            raise ProtocolError(f"input '{name}' is given twice")
        _check_column_shape(name, shape)
        rows = shape[0]
        if binary_size is not None:
            values, offset = _binary_column(column, datatype, binary, offset, binary_size, rows)
        else:
            values = _json_column(column, datatype, data, rows, may_contain_booleans)
        decoded[name] = values
    if offset != len(binary):
        raise ProtocolError(
            f"binary payload has {len(binary) - offset} bytes not claimed by any input"
        )
    missing = [name for name in names if name not in decoded]
    if missing:
        raise ProtocolError(f"missing input(s) for column(s) {', '.join(missing)}")
    lengths = {len(values) for values in decoded.values()}
    if len(lengths) != 1:
        raise ProtocolError("column inputs must all have the same number of rows")
    if lengths == {0}:
        raise ProtocolError("the request holds no rows")
    if schema.all_numeric:
        return np.ascontiguousarray(np.column_stack([decoded[n] for n in names]))
    matrix = np.empty((lengths.pop(), len(names)), dtype=object)
    for index, name in enumerate(names):
        matrix[:, index] = decoded[name]
    return matrix


_RawInput = tuple[str, str, tuple[int, ...], Any, Any]


def _raw_inputs(inputs: list[Any]) -> list[_RawInput]:
    raw: list[_RawInput] = []
    for index, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise ProtocolError(f"inputs[{index}] must be a JSON object")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"inputs[{index}].name must be a non-empty string")
        datatype = item.get("datatype")
        if not isinstance(datatype, str):
            raise ProtocolError(f"input '{name}': 'datatype' must be a string")
        shape = _shape(item.get("shape"), name)
        parameters = _optional_object(item.get("parameters"), f"inputs[{index}].parameters")
        raw.append((name, datatype, shape, item.get("data"), parameters.get("binary_data_size")))
    return raw


def _single_numeric_tensor(
    raw: _RawInput, binary: bytes, schema: TabularSchema, may_contain_booleans: bool
) -> np.ndarray:
    name, datatype, shape, data, binary_size = raw
    width = len(schema.columns)
    if (len(shape) != 2 or shape[1] != width) and not (len(shape) == 1 and width == 1):
        raise ProtocolError(
            f"input '{name}': expected shape [N, {width}] (N rows of the columns "
            f"{', '.join(schema.names)}), got {list(shape)}"
        )
    dtype = NUMERIC_DATATYPES[datatype]
    size = math.prod(shape)
    if binary_size is not None:
        values, end = _binary_tensor(name, dtype, binary, 0, binary_size, size)
        if end != len(binary):
            raise ProtocolError(f"binary payload has {len(binary) - end} bytes not claimed")
        matrix = values.astype(np.float64)
    else:
        if may_contain_booleans and _contains_boolean(data):
            raise ProtocolError(f"input '{name}': data must be numbers, not booleans")
        matrix = _float_values(name, data, size)
    if np.isinf(matrix).any():
        raise ProtocolError(f"input '{name}': values must be finite numbers or null (missing)")
    matrix = matrix.reshape(-1, width)
    if matrix.shape[0] == 0:
        raise ProtocolError("the request holds no rows")
    return np.ascontiguousarray(matrix)


def _check_column_shape(name: str, shape: tuple[int, ...]) -> None:
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return
    raise ProtocolError(f"input '{name}': a column input must have shape [N] or [N, 1]")


def _expected_datatypes(column: ColumnSchema) -> str:
    if column.kind == "numeric":
        return "a number type (FP64, FP32, INT64, …)"
    if column.kind == "boolean":
        return "BOOL (or an integer type holding 0/1)"
    if column.kind == "datetime":
        return "BYTES (ISO-8601 text)"
    return "BYTES" + (" or a number type (a numeric code)" if column.accepts_numbers else "")


def _datatype_fits(column: ColumnSchema, datatype: str) -> bool:
    if datatype == "BYTES":
        return column.kind in ("categorical", "datetime")
    if datatype == "BOOL":
        return column.kind == "boolean"
    if datatype in NUMERIC_DATATYPES:
        if column.kind == "boolean":
            return NUMERIC_DATATYPES[datatype].kind in "iu"
        return column.kind == "numeric" or (column.kind == "categorical" and column.accepts_numbers)
    return False


def _wrong_datatype(column: ColumnSchema, datatype: str) -> ProtocolError:
    return ProtocolError(
        f"input '{column.name}': datatype {datatype} does not fit {column.kind} column "
        f"'{column.name}'; send {_expected_datatypes(column)}"
    )


def _json_column(
    column: ColumnSchema, datatype: str, data: object, rows: int, may_contain_booleans: bool
) -> np.ndarray:
    name = column.name
    if not _datatype_fits(column, datatype):
        raise _wrong_datatype(column, datatype)
    if not isinstance(data, list):
        raise ProtocolError(f"input '{name}': 'data' must be a list")
    flat = _flatten_column(name, data)
    if len(flat) != rows:
        raise ProtocolError(f"input '{name}': shape needs {rows} values, 'data' has {len(flat)}")
    if datatype == "BYTES":
        for value in flat:
            if value is not None and not isinstance(value, str):
                raise ProtocolError(
                    f"input '{name}': BYTES data must be strings or null, not {value!r}"
                )
        return _canonical_text(column, flat)
    if datatype == "BOOL":
        for value in flat:
            if value is not None and not isinstance(value, bool):
                raise ProtocolError(f"input '{name}': BOOL data must be true, false or null")
        return np.array([np.nan if v is None else float(v) for v in flat], dtype=np.float64)
    if may_contain_booleans and any(isinstance(v, bool) for v in flat):
        raise ProtocolError(f"input '{name}': {datatype} data must be numbers, not booleans")
    values = _float_values(name, flat, rows)
    if datatype in ("FP16", "FP32"):  # the declared precision, as for a bare model
        with np.errstate(over="ignore"):
            values = values.astype(NUMERIC_DATATYPES[datatype]).astype(np.float64)
    if NUMERIC_DATATYPES[datatype].kind in "iu":
        present = values[~np.isnan(values)]
        if not np.array_equal(present, np.round(present)):
            raise ProtocolError(f"input '{name}': {datatype} data must be integers")
    if np.isinf(values).any():
        raise ProtocolError(f"input '{name}': values must be finite numbers or null (missing)")
    if column.kind == "boolean" and not np.isin(values[~np.isnan(values)], (0.0, 1.0)).all():
        raise ProtocolError(f"input '{name}': a boolean column takes 0 or 1")
    if column.kind == "categorical":  # a numeric code: 3 and 3.0 are category "3"
        return categorical_values(values)
    return values


def _flatten_column(name: str, data: list[Any]) -> list[Any]:
    if all(not isinstance(v, list) for v in data):
        return data
    flat: list[Any] = []
    for value in data:
        if isinstance(value, list):
            if len(value) != 1 or isinstance(value[0], list):
                raise ProtocolError(f"input '{name}': nested data must be [[v], [v], …]")
            flat.append(value[0])
        else:
            raise ProtocolError(f"input '{name}': data mixes nested and flat values")
    return flat


def _float_values(name: str, data: object, size: int) -> np.ndarray:
    try:
        # None (JSON null) becomes NaN: a missing value the pipeline imputes.
        values = np.array(data, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ProtocolError(f"input '{name}': 'data' must hold numbers or null") from None
    if values.size != size:
        raise ProtocolError(f"input '{name}': shape needs {size} values, 'data' has {values.size}")
    return values


def _canonical_text(column: ColumnSchema, values: list[Any]) -> np.ndarray:
    if column.kind == "datetime":
        out = np.empty(len(values), dtype=object)
        out[:] = [np.nan if v is None else v for v in values]
        return out
    return categorical_values(values)


def _binary_column(
    column: ColumnSchema, datatype: str, binary: bytes, offset: int, size: object, rows: int
) -> tuple[np.ndarray, int]:
    name = column.name
    if not _datatype_fits(column, datatype):
        raise _wrong_datatype(column, datatype)
    if type(size) is not int or size < 0:
        raise ProtocolError(f"input '{name}': binary_data_size must be a non-negative integer")
    end = offset + size
    if end > len(binary):
        raise ProtocolError(f"input '{name}': binary payload is shorter than binary_data_size")
    if datatype == "BYTES":
        return _canonical_text(column, _byte_strings(name, binary[offset:end], rows)), end
    dtype = _BINARY_BOOL if datatype == "BOOL" else NUMERIC_DATATYPES[datatype]
    if size != rows * dtype.itemsize:
        raise ProtocolError(
            f"input '{name}': binary_data_size {size} does not match shape "
            f"({rows} x {dtype.itemsize} bytes)"
        )
    values = np.frombuffer(binary, dtype=dtype, count=rows, offset=offset).astype(np.float64)
    if np.isinf(values).any():
        raise ProtocolError(f"input '{name}': values must be finite numbers or NaN (missing)")
    if column.kind == "categorical":
        return categorical_values(values), end
    if column.kind == "boolean" and not np.isin(values[~np.isnan(values)], (0.0, 1.0)).all():
        raise ProtocolError(f"input '{name}': a boolean column takes 0 or 1")
    return values, end


def _byte_strings(name: str, payload: bytes, rows: int) -> list[Any]:
    """Triton's BYTES serialisation: each element a 4-byte little-endian length + bytes."""
    values: list[Any] = []
    position = 0
    for _ in range(rows):
        if position + 4 > len(payload):
            raise ProtocolError(f"input '{name}': BYTES payload ends early")
        length = int.from_bytes(payload[position : position + 4], "little")
        position += 4
        if position + length > len(payload):
            raise ProtocolError(f"input '{name}': BYTES payload ends early")
        try:
            values.append(payload[position : position + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise ProtocolError(f"input '{name}': BYTES data must be UTF-8 text") from None
        position += length
    if position != len(payload):
        raise ProtocolError(f"input '{name}': BYTES payload is longer than its {rows} values")
    return values


def _skip_binary(name: str, binary: bytes, offset: int, size: object) -> int:
    if size is None:
        return offset
    if type(size) is not int or size < 0 or offset + size > len(binary):
        raise ProtocolError(f"input '{name}': binary_data_size does not fit the payload")
    return offset + size


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
