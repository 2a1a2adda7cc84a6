from __future__ import annotations

import pytest

from kiln.core.desired import contains

pytestmark = pytest.mark.unit


def test_contains_ignores_server_defaults() -> None:
    current = {"spec": {"replicas": 2, "x": 1, "list": [{"a": 1, "default": 2}]}}
    assert contains(current, {"spec": {"replicas": 2, "list": [{"a": 1}]}})
    assert not contains(current, {"spec": {"replicas": 3}})
    assert not contains(current, {"spec": {"list": [{"a": 1}, {"a": 2}]}})


def test_a_missing_or_differently_shaped_field_is_not_contained() -> None:
    assert not contains({"spec": {}}, {"spec": {"replicas": 1}})
    assert not contains({"spec": [1]}, {"spec": {"replicas": 1}})
    assert not contains({"spec": {"ports": {"a": 1}}}, {"spec": {"ports": [{"a": 1}]}})
    assert contains({"spec": {"paused": None}}, {"spec": {"paused": None}})
