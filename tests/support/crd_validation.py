"""Validate an object against a generated CRD without an apiserver.

A stand-in for what kube-apiserver does on create/update, close enough for unit tests:
apply the schema's defaults, check the OpenAPI schema (with `jsonschema`, Draft 4 being
the dialect OpenAPI 3.0 schemas follow), then evaluate the CEL rules
(`x-kubernetes-validations`, with `cel-python`) where they sit. Errors are reported the
apiserver's way: `<field path>: <message>`. The e2e tests apply the same objects to a real
apiserver, which is the final word.
"""

from __future__ import annotations

import copy
import functools
import itertools
from typing import Any

import celpy
from celpy import celtypes
from jsonschema import Draft4Validator

Json = Any


def openapi_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def apply_defaults(value: Json, schema: dict[str, Any]) -> Json:
    """Structural defaulting: a missing property with a default gets it, recursively."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name, sub in properties.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
        for name, item in value.items():
            if name in properties:
                apply_defaults(item, properties[name])
            elif isinstance(schema.get("additionalProperties"), dict):
                apply_defaults(item, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])
    return value


def _path(parts: list[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "<root>"


def _to_cel(value: Json, schema: dict[str, Any]) -> Any:
    """JSON -> CEL values, typed by the schema (a `number` is a double even when written 1)."""
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return celtypes.MapType(
            {
                celtypes.StringType(k): _to_cel(
                    v, properties.get(k, extra if isinstance(extra, dict) else {})
                )
                for k, v in value.items()
            }
        )
    if isinstance(value, list):
        items = schema.get("items", {})
        return celtypes.ListType([_to_cel(v, items) for v in value])
    return celpy.json_to_cel(value)


def _is_sorted(values: celtypes.ListType) -> celtypes.BoolType:
    """Kubernetes' CEL list library `isSorted()`, which cel-python lacks."""
    items: list[Any] = list(values)
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


KUBERNETES_FUNCTIONS: dict[str, Any] = {"isSorted": _is_sorted}
_ENVIRONMENT = celpy.Environment()


# Compiling is most of the time a validation takes; a compiled program is reusable.
@functools.lru_cache(maxsize=1024)
def compile_rule(rule: str) -> celpy.Runner:
    return _ENVIRONMENT.program(_ENVIRONMENT.compile(rule), functions=KUBERNETES_FUNCTIONS)


def _cel_errors(value: Json, old: Json, schema: dict[str, Any], path: list[str | int]) -> list[str]:
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        is_transition = "oldSelf" in rule["rule"]
        if is_transition and old is None:
            continue  # transition rules only run on update
        activation = {"self": _to_cel(value, schema)}
        if is_transition:
            activation["oldSelf"] = _to_cel(old, schema)
        try:
            result = compile_rule(rule["rule"]).evaluate(activation)
        except celpy.CELEvalError as error:
            errors.append(f"{_path(path)}: rule error in {rule['rule']!r}: {error}")
            continue
        if result is not True and result != celtypes.BoolType(True):
            errors.append(f"{_path(path)}: Invalid value: {rule['message']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            sub = properties.get(name, extra if isinstance(extra, dict) else None)
            if sub is not None:
                old_item = old.get(name) if isinstance(old, dict) else None
                errors += _cel_errors(item, old_item, sub, [*path, name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors += _cel_errors(item, None, schema["items"], [*path, index])
    return errors


def validate(
    obj: dict[str, Any], crd: dict[str, Any], old: dict[str, Any] | None = None
) -> list[str]:
    """The errors the apiserver would report for creating `obj` (updating `old` to it)."""
    schema = openapi_schema(crd)
    obj = apply_defaults(copy.deepcopy(obj), schema)
    if old is not None:
        old = apply_defaults(copy.deepcopy(old), schema)
    errors: list[str] = []
    for error in Draft4Validator(schema).iter_errors(obj):
        path = list(error.absolute_path)
        if error.validator == "required":
            # The apiserver names the missing field itself: `spec.model: Required value`.
            errors += [
                f"{_path([*path, name])}: Required value"
                for name in error.validator_value
                if name not in error.instance
            ]
        else:
            errors.append(f"{_path(path)}: {error.message}")
    if errors:
        return errors
    return _cel_errors(obj, old, schema, [])
