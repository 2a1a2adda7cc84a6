"""Prometheus answers reduced to one number, or to why there is none."""

from __future__ import annotations

import json

import pytest

from kiln.services.prometheus import parse_response

pytestmark = pytest.mark.unit


def answer(result_type: str, result: object) -> str:
    return json.dumps({"status": "success", "data": {"resultType": result_type, "result": result}})


@pytest.mark.parametrize(
    ("status", "text", "kind", "value"),
    [
        (200, answer("vector", [{"metric": {}, "value": [1, "0.25"]}]), "ok", 0.25),
        (200, answer("scalar", [1, "3"]), "ok", 3.0),
        (200, answer("vector", []), "no_data", None),
        (200, answer("vector", [{"metric": {}, "value": [1, "NaN"]}]), "no_data", None),
        (200, answer("vector", [{"metric": {}, "value": [1, "+Inf"]}]), "ok", float("inf")),
        (200, answer("vector", [{"value": [1, "1"]}, {"value": [1, "2"]}]), "error", None),
        (200, answer("matrix", []), "error", None),
        (
            400,
            json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}),
            "error",
            None,
        ),
        (
            503,
            json.dumps({"status": "error", "errorType": "unavailable", "error": "x"}),
            "unreachable",
            None,
        ),
        (502, "<html>bad gateway</html>", "unreachable", None),
        (200, "not json", "error", None),
    ],
)
def test_parse_response(status: int, text: str, kind: str, value: float | None) -> None:
    result = parse_response(status, text)
    assert result.status == kind
    assert result.value == value
    if kind != "ok":
        assert result.message
