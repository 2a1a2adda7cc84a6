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


def _vector(*series: tuple[dict[str, str], str]) -> str:
    import json

    result = [{"metric": m, "value": [0, v]} for m, v in series]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})


def test_a_vector_answer_is_read_by_its_label() -> None:
    from kiln.services.prometheus import parse_vector_response

    text = _vector(({"bin": "0"}, "3"), ({"bin": "1"}, "NaN"), ({"bin": "__other__"}, "2.5"))
    answer = parse_vector_response(200, text, by="bin")
    assert answer.status == "ok"
    assert dict(answer.values) == {"0": 3.0, "__other__": 2.5}


def test_an_empty_vector_is_no_data_and_a_failure_keeps_its_status() -> None:
    from kiln.services.prometheus import parse_vector_response

    assert parse_vector_response(200, _vector(), by="bin").status == "no_data"
    assert parse_vector_response(503, "down", by="bin").status == "unreachable"
    bad = '{"status":"error","errorType":"bad_data","error":"parse error"}'
    assert parse_vector_response(400, bad, by="bin").status == "error"


def test_a_series_without_the_label_is_an_error() -> None:
    from kiln.services.prometheus import parse_vector_response

    answer = parse_vector_response(200, _vector(({"other": "x"}, "1")), by="bin")
    assert answer.status == "error" and "bin" in answer.message
