"""A real `kiln-serve` process on a loopback port, with a real skops artifact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.serve_process import ServerProcess
from tests.support.serving import iris_logistic_regression, write_skops


@pytest.fixture
def artifact(tmp_path: Path) -> tuple[Path, str]:
    return write_skops(iris_logistic_regression(), tmp_path)


@pytest.fixture
def start_server(artifact: tuple[Path, str]) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def start(*extra: str, path: Path | None = None, sha256: str | None = None) -> ServerProcess:
        server = ServerProcess(path or artifact[0], sha256 or artifact[1], *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server: Any) -> ServerProcess:
    """A fresh server (for tests that count its metrics or stop it)."""
    process: ServerProcess = start_server("--max-body-bytes=65536")
    process.wait_ready()
    return process


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a module's tests that only read answers, not counters."""
    path, sha256 = write_skops(iris_logistic_regression(), tmp_path_factory.mktemp("model"))
    process = ServerProcess(path, sha256, "--max-body-bytes=65536")
    process.wait_ready()
    yield process
    process.stop()
