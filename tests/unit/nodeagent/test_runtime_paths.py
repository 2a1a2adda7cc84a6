from __future__ import annotations

from pathlib import Path

import pytest

from kiln.devcluster.nodeagent.main import under_pod_tmp

pytestmark = pytest.mark.unit


def test_a_checkout_under_tmp_is_bound_back_into_pods() -> None:
    # Pods get a fresh tmpfs on /tmp; a venv and project below it must stay reachable.
    paths = [
        Path("/tmp/ci/.venv/bin"),
        Path("/tmp/ci/.venv"),
        Path("/tmp/ci/operator"),
        Path("/usr/lib/python3.11"),
    ]
    assert under_pod_tmp(paths) == ["/tmp/ci/.venv", "/tmp/ci/operator"]


def test_nothing_is_bound_when_the_runtime_is_outside_tmp() -> None:
    assert under_pod_tmp([Path("/work/main/.venv"), Path("/root/.pyenv/versions/3.11")]) == []
