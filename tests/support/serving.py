"""Models and request bodies shared by the model-server tests."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def iris() -> tuple[np.ndarray, np.ndarray]:
    features, target = load_iris(return_X_y=True)
    return np.asarray(features, np.float64), np.asarray(target)


@functools.cache
def iris_logistic_regression() -> LogisticRegression:
    """Fitted once per test session; callers must not refit or mutate it."""
    features, target = iris()
    return LogisticRegression(max_iter=1000).fit(features, target)


def write_skops(estimator: Any, directory: Path, name: str = "model.skops") -> tuple[Path, str]:
    import skops.io as sio

    path = directory / name
    data = sio.dumps(estimator)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def infer_body(rows: Any, datatype: str = "FP64", **extra: Any) -> bytes:
    array = np.asarray(rows)
    tensor = {
        "name": "input-0",
        "shape": list(array.shape),
        "datatype": datatype,
        "data": array.tolist(),
    }
    return json.dumps({"inputs": [tensor], **extra}).encode()


def tensor_body(**fields: Any) -> bytes:
    """One input tensor (iris-shaped by default) with some fields overridden."""
    tensor: dict[str, Any] = {
        "name": "input-0",
        "shape": [1, 4],
        "datatype": "FP64",
        "data": [5.1, 3.5, 1.4, 0.2],
    }
    for key, value in fields.items():
        if value is _DROP:
            tensor.pop(key, None)
        else:
            tensor[key] = value
    return json.dumps({"inputs": [tensor]}).encode()


_DROP = object()
DROP: Any = _DROP

# (label, body) pairs that every correct server answers with 400.
MALFORMED_BODIES: list[tuple[str, bytes]] = [
    ("empty body", b""),
    ("malformed JSON", b'{"inputs": [{"name": "input-0",'),
    (
        "NaN literal",
        b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP64","data":[NaN,1,2,3]}]}',
    ),
    ("body is a list", b"[1, 2, 3]"),
    ("body is a string", b'"hello"'),
    ("no inputs", b"{}"),
    ("inputs empty", b'{"inputs": []}'),
    ("inputs not a list", b'{"inputs": {"name": "input-0"}}'),
    ("input not an object", b'{"inputs": [42]}'),
    ("id not a string", b'{"id": 7, "inputs": []}'),
    ("parameters not an object", b'{"parameters": [], "inputs": []}'),
    ("missing name", tensor_body(name=DROP)),
    ("missing datatype", tensor_body(datatype=DROP)),
    ("missing shape", tensor_body(shape=DROP)),
    ("missing data", tensor_body(data=DROP)),
    ("wrong shape [1,3]", tensor_body(shape=[1, 3], data=[1.0, 2.0, 3.0])),
    ("wrong shape [4]", tensor_body(shape=[4])),
    ("wrong shape [1,2,2]", tensor_body(shape=[1, 2, 2])),
    ("shape with negative dim", tensor_body(shape=[-1, 4])),
    ("shape with float dim", tensor_body(shape=[1.0, 4])),
    ("shape with bool dim", tensor_body(shape=[True, 4])),
    ("shape not a list", tensor_body(shape="1,4")),
    ("too few values", tensor_body(data=[1.0, 2.0, 3.0])),
    ("too many values", tensor_body(data=[1.0, 2.0, 3.0, 4.0, 5.0])),
    ("ragged nested data", tensor_body(shape=[2, 4], data=[[1, 2, 3, 4], [1, 2]])),
    ("nested shape differs", tensor_body(shape=[2, 4], data=[[1, 2], [3, 4], [5, 6], [7, 8]])),
    ("datatype BYTES", tensor_body(datatype="BYTES", data=["a", "b", "c", "d"])),
    ("datatype BOOL", tensor_body(datatype="BOOL", data=[True, False, True, False])),
    ("datatype unknown", tensor_body(datatype="FLOAT")),
    ("datatype lower case", tensor_body(datatype="fp32")),
    ("strings in data", tensor_body(data=["a", "b", "c", "d"])),
    ("numeric strings in data", tensor_body(data=["1", "2", "3", "4"])),
    ("null in data", tensor_body(data=[1.0, None, 2.0, 3.0])),
    ("bool in data", tensor_body(data=[1.0, True, 2.0, 3.0])),
    ("object in data", tensor_body(data=[1.0, {}, 2.0, 3.0])),
    ("data not a list", tensor_body(data="1,2,3,4")),
    ("float data for INT64", tensor_body(datatype="INT64", data=[1.5, 2, 3, 4])),
    ("INT8 out of range", tensor_body(datatype="INT8", data=[1, 2, 3, 300])),
    ("huge integer", tensor_body(datatype="INT64", data=[1, 2, 3, 2**64])),
    ("FP16 overflow to inf", tensor_body(datatype="FP16", data=[1.0, 2.0, 3.0, 1e6])),
    ("empty input [0,4]", tensor_body(shape=[0, 4], data=[])),
    ("unknown output", infer_body([[5.1, 3.5, 1.4, 0.2]], outputs=[{"name": "nope"}])),
    ("outputs not a list", infer_body([[5.1, 3.5, 1.4, 0.2]], outputs={"name": "predict"})),
    (
        "unknown feature tensor",
        json.dumps(
            {
                "inputs": [
                    {"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": [1]},
                    {"name": "colour", "shape": [1], "datatype": "FP64", "data": [1]},
                ]
            }
        ).encode(),
    ),
]


def json_lines(data: bytes) -> dict[str, Any]:
    document = json.loads(data)
    assert isinstance(document, dict)
    return document
