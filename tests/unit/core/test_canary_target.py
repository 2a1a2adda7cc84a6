"""Which version a ModelDeployment converges to (`resolve_target`)."""

from __future__ import annotations

import pytest
from tests.support.builders import ModelDeploymentBuilder, ModelVersionBuilder

from kiln.api.model_deployment import ModelDeployment
from kiln.api.model_version import ModelVersion
from kiln.core.canary import Target, resolve_target

pytestmark = pytest.mark.unit


def versions(*states: str, model: str = "iris") -> list[ModelVersion]:
    return [
        ModelVersion.model_validate(ModelVersionBuilder(model, n).approval(state).obj())
        for n, state in enumerate(states, start=1)
    ]


def following() -> ModelDeployment:
    return ModelDeployment.model_validate(ModelDeploymentBuilder("iris").obj())


def pinned(version: str) -> ModelDeployment:
    return ModelDeployment.model_validate(ModelDeploymentBuilder("iris").pinned(version).obj())


def test_following_serves_the_newest_approved_version_of_its_model() -> None:
    found = versions("Approved", "Approved", "Pending", "Rejected")
    other = versions("Approved", "Approved", "Approved", model="wine")
    assert resolve_target(following(), found + other) == Target("iris-v2")


def test_following_without_an_approved_version_names_the_reason() -> None:
    target = resolve_target(following(), versions("Pending", "Rejected"))
    assert (target.version, target.reason) == (None, "NoApprovedVersion")


def test_a_pinned_version_is_served_unless_missing_or_rejected() -> None:
    found = versions("Approved", "Pending", "Rejected")
    assert resolve_target(pinned("iris-v2"), found) == Target("iris-v2")  # a person's choice
    assert resolve_target(pinned("iris-v3"), found).reason == "ModelVersionRejected"
    assert resolve_target(pinned("iris-v9"), found).reason == "ModelVersionNotFound"
