"""Open Inference Protocol v2 request parsing and response encoding."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from tests.support.serving import IRIS_FEATURES, MALFORMED_BODIES, infer_body, tensor_body

from kiln.server.protocol import (
    PREDICT_OUTPUT,
    PROBA_OUTPUT,
    InputSchema,
    OutputTensor,
    ProtocolError,
    encode_infer_response,
    parse_infer_request,
)

pytestmark = pytest.mark.unit

SCHEMA = InputSchema(n_features=4, feature_names=IRIS_FEATURES)
UNNAMED = InputSchema(n_features=4)
OUTPUTS = frozenset({PREDICT_OUTPUT, PROBA_OUTPUT})
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.8, 2.8, 4.8, 1.4]]


def parse(body: bytes, schema: InputSchema = SCHEMA, header_length: int | None = None):
    return parse_infer_request(body, schema, OUTPUTS, header_length)


def test_nested_rows_become_a_float64_matrix() -> None:
    request = parse(infer_body(ROWS))
    assert request.features.dtype == np.float64
    assert request.features.flags.c_contiguous
    np.testing.assert_array_equal(request.features, np.array(ROWS))


def test_flat_row_major_data_is_reshaped() -> None:
    flat = [value for row in ROWS for value in row]
    request = parse(tensor_body(shape=[2, 4], data=flat))
    np.testing.assert_array_equal(request.features, np.array(ROWS))


def test_fp32_values_are_rounded_to_float32_as_declared() -> None:
    request = parse(tensor_body(datatype="FP32", data=[0.1, 0.2, 0.3, 0.4]))
    expected = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32).astype(np.float64)
    np.testing.assert_array_equal(request.features, expected)


def test_int64_data_is_accepted() -> None:
    request = parse(tensor_body(datatype="INT64", data=[5, 3, 1, 0]))
    np.testing.assert_array_equal(request.features, [[5.0, 3.0, 1.0, 0.0]])


def test_integers_are_fine_for_float_types() -> None:
    request = parse(tensor_body(datatype="FP64", data=[5, 3, 1, 0]))
    np.testing.assert_array_equal(request.features, [[5.0, 3.0, 1.0, 0.0]])


def test_id_is_kept_and_parameters_are_tolerated() -> None:
    body = infer_body(ROWS, id="req-42", parameters={"content_type": "np", "anything": [1]})
    request = parse(body)
    assert request.request_id == "req-42"
    assert request.outputs[0].name == PREDICT_OUTPUT
    assert request.outputs[0].binary is False


def test_booleans_elsewhere_in_the_body_do_not_trip_the_boolean_check() -> None:
    body = infer_body(ROWS, parameters={"binary_data_output": False, "flag": True})
    np.testing.assert_array_equal(parse(body).features, np.array(ROWS))


def test_one_tensor_per_feature_by_name_in_any_order() -> None:
    columns = np.array(ROWS).T
    inputs = [
        {"name": name, "shape": [2], "datatype": "FP64", "data": columns[index].tolist()}
        for index, name in enumerate(IRIS_FEATURES)
    ]
    inputs.reverse()
    inputs[0]["shape"] = [2, 1]  # [N, 1] is accepted too
    request = parse(json.dumps({"inputs": inputs}).encode())
    np.testing.assert_array_equal(request.features, np.array(ROWS))


def test_per_feature_tensors_need_every_feature() -> None:
    inputs = [{"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": [1.0]}]
    inputs.append({"name": "sepal_width", "shape": [1], "datatype": "FP64", "data": [1.0]})
    with pytest.raises(ProtocolError, match="missing feature inputs: petal_length, petal_width"):
        parse(json.dumps({"inputs": inputs}).encode())


def test_per_feature_tensors_need_names_on_the_model() -> None:
    inputs = [{"name": f"f{i}", "shape": [1], "datatype": "FP64", "data": [1.0]} for i in range(4)]
    with pytest.raises(ProtocolError, match="no feature names"):
        parse(json.dumps({"inputs": inputs}).encode(), UNNAMED)


@pytest.mark.parametrize(("label", "body"), MALFORMED_BODIES, ids=[m[0] for m in MALFORMED_BODIES])
def test_malformed_requests_raise_a_400_protocol_error(label: str, body: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse(body)
    assert caught.value.status == 400
    assert caught.value.message  # says what is wrong


def test_wrong_shape_message_names_the_expected_shape() -> None:
    with pytest.raises(ProtocolError, match=r"expected shape \[N, 4\].*got \[1, 3\]"):
        parse(tensor_body(shape=[1, 3], data=[1.0, 2.0, 3.0]))


def test_binary_tensor_extension_as_tritonclient_sends_it() -> None:
    matrix = np.array(ROWS, np.float32)
    raw = matrix.tobytes()
    header = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [2, 4],
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    header_bytes = json.dumps(header).encode()
    request = parse(header_bytes + raw, header_length=len(header_bytes))
    np.testing.assert_array_equal(request.features, matrix.astype(np.float64))
    assert request.outputs[0].binary is True


@pytest.mark.parametrize(
    ("size", "payload_bytes", "header_length_delta", "message"),
    [
        (31, 32, 0, "does not match shape"),
        (32, 16, 0, "shorter than binary_data_size"),
        (32, 40, 0, "not claimed by any input"),
        (32, 32, 10_000, "does not fit"),
    ],
)
def test_binary_tensor_size_errors_are_400(
    size: int, payload_bytes: int, header_length_delta: int, message: str
) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [2, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()
    with pytest.raises(ProtocolError, match=message):
        parse(header + b"\0" * payload_bytes, header_length=len(header) + header_length_delta)


def test_requested_outputs_with_binary_flag() -> None:
    body = infer_body(
        ROWS,
        outputs=[
            {"name": "predict_proba", "parameters": {"binary_data": True}},
            {"name": "predict"},
        ],
    )
    outputs = parse(body).outputs
    assert [(o.name, o.binary) for o in outputs] == [("predict_proba", True), ("predict", False)]


def test_fuzzed_bodies_only_ever_raise_protocol_errors() -> None:
    """Random mutations of a valid body: a parse either succeeds or says 400, never crashes."""
    generator = random.Random(1234)
    valid = infer_body(ROWS, id="x")
    alphabet = b'{}[]",:0123456789.-eE truefalsnul\\\x00\xff'
    outcomes = {"ok": 0, "rejected": 0}
    for _ in range(3000):
        body = bytearray(valid)
        for _ in range(generator.randint(1, 4)):
            position = generator.randrange(len(body))
            action = generator.random()
            if action < 0.4:
                body[position] = generator.choice(alphabet)
            elif action < 0.7:
                del body[position : position + generator.randint(1, 8)]
            else:
                body[position:position] = bytes(generator.choices(alphabet, k=3))
        try:
            request = parse(bytes(body))
        except ProtocolError as exc:
            assert exc.status == 400
            outcomes["rejected"] += 1
        else:
            assert request.features.shape[1] == 4
            assert np.isfinite(request.features).all()
            outcomes["ok"] += 1
    assert outcomes["rejected"] > 1000  # the fuzzing did produce bad input


def test_fuzzed_documents_only_ever_raise_protocol_errors() -> None:
    """Structurally valid JSON with wrong types in every field."""
    generator = random.Random(99)
    values: list[object] = [None, True, 0, -1, 2**70, 1.5, "s", [], {}, [1], [[1, 2]], {"a": 1}]
    fields = ["name", "shape", "datatype", "data", "parameters"]
    for _ in range(2000):
        tensor: dict[str, object] = {
            "name": "input-0",
            "shape": [1, 4],
            "datatype": "FP64",
            "data": [1, 2, 3, 4],
        }
        for field in generator.sample(fields, generator.randint(1, 3)):
            tensor[field] = generator.choice(values)
        document = {"inputs": [tensor], "outputs": generator.choice([None, [], [{"name": 1}]])}
        if document["outputs"] is None:
            del document["outputs"]
        try:
            parse(json.dumps(document).encode())
        except ProtocolError as exc:
            assert exc.status == 400


def test_json_response_has_datatype_shape_and_echoes_id() -> None:
    values = np.array([0, 2, 1])
    body, header_length = encode_infer_response(
        "iris", "3", "abc", [(OutputTensor("predict", "INT64", values), False)]
    )
    assert header_length is None
    assert json.loads(body) == {
        "model_name": "iris",
        "model_version": "3",
        "id": "abc",
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [3], "data": [0, 2, 1]}],
    }


def test_response_without_id_has_no_id() -> None:
    body, _ = encode_infer_response(
        "iris", "3", None, [(OutputTensor("predict", "FP64", np.array([1.5])), False)]
    )
    assert "id" not in json.loads(body)


def test_two_dimensional_output_is_flattened_row_major_with_its_shape() -> None:
    probabilities = np.array([[0.1, 0.9], [0.7, 0.3]])
    body, _ = encode_infer_response(
        "m", "1", None, [(OutputTensor("predict_proba", "FP64", probabilities), False)]
    )
    output = json.loads(body)["outputs"][0]
    assert output["shape"] == [2, 2]
    assert output["data"] == [0.1, 0.9, 0.7, 0.3]


def test_string_labels_are_bytes_tensors() -> None:
    labels = np.array(["setosa", "virginica"], dtype=object)
    body, _ = encode_infer_response(
        "m", "1", None, [(OutputTensor("predict", "BYTES", labels), False)]
    )
    assert json.loads(body)["outputs"][0]["data"] == ["setosa", "virginica"]


def test_binary_output_follows_the_json_header() -> None:
    values = np.array([0, 2, 1])
    body, header_length = encode_infer_response(
        "m", "1", None, [(OutputTensor("predict", "INT64", values), True)]
    )
    assert header_length is not None
    header = json.loads(body[:header_length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 24}
    np.testing.assert_array_equal(np.frombuffer(body[header_length:], "<i8"), values)


def test_binary_bytes_output_uses_length_prefixed_elements() -> None:
    labels = np.array(["ab", "c"], dtype=object)
    body, header_length = encode_infer_response(
        "m", "1", None, [(OutputTensor("predict", "BYTES", labels), True)]
    )
    assert header_length is not None
    assert body[header_length:] == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"
