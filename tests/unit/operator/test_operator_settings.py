from __future__ import annotations

import logging

import kopf
import pytest

import kiln.handlers  # noqa: F401  (registers the handlers, as kiln-operator does)
from kiln import operator

pytestmark = pytest.mark.unit


def configured(standalone: bool) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    operator._RUN_OPTIONS["standalone"] = standalone
    try:
        operator.configure(settings=settings)
    finally:
        operator._RUN_OPTIONS["standalone"] = False
    return settings


def test_peering_is_mandatory_unless_standalone() -> None:
    assert configured(standalone=False).peering.mandatory is True
    assert configured(standalone=True).peering.mandatory is False


def test_event_only_handlers_skip_kopf_diff_state() -> None:
    # Every Kiln handler is on.event; the day one is a change handler, the real storage
    # (annotations) must come back, or kopf would see every object as new on each event.
    assert not kopf.get_default_registry()._changing.get_all_handlers()
    settings = configured(standalone=True)
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, operator.NoDiffBaseStorage)
    body = kopf.Body({"metadata": {"name": "x"}, "spec": {"a": 1}})
    assert storage.build(body=body) == {} and storage.fetch(body=body) is None
    assert settings.posting.level == logging.WARNING


def test_a_change_handler_brings_the_annotation_storage_back() -> None:
    registry = kopf.get_default_registry()
    before = list(registry._changing._handlers)
    kopf.on.update("kiln.dev", "v1alpha1", "trainingjobs", registry=registry)(lambda **_: None)
    try:
        storage = configured(standalone=True).persistence.diffbase_storage
        assert isinstance(storage, kopf.AnnotationsDiffBaseStorage)
    finally:
        registry._changing._handlers[:] = before


def test_the_trainer_log_interval_is_a_setting_and_zero_turns_reading_off() -> None:
    from kiln.settings import OperatorSettings

    assert OperatorSettings.from_env({}).trainer_log_interval_seconds == 5.0
    env = {"KILN_TRAINER_LOG_INTERVAL_SECONDS": "0"}
    assert OperatorSettings.from_env(env).trainer_log_interval_seconds == 0.0
