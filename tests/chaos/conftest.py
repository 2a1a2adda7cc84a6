from __future__ import annotations

from typing import Any

import pytest

from tests.support.kmock_api import serve_resources


@pytest.fixture
def server(kmock: Any) -> str:
    """kmock's apiserver, serving every kind the controllers read and write."""
    return serve_resources(kmock)
