"""A real `kiln-serve` process on a loopback port, for component tests."""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.ports import free_port

KILN_SERVE = str(Path(sys.executable).parent / "kiln-serve")


class ServerProcess:
    def __init__(
        self,
        artifact: Path,
        sha256: str,
        *extra: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.log_path = artifact.parent / f"server-{self.port}.log"
        self._log = self.log_path.open("wb")
        command = [
            KILN_SERVE,
            "--model-name=iris",
            "--model-version=7",
            "--track=canary",
            f"--artifact-uri={artifact}",
            f"--artifact-sha256={sha256}",
            "--host=127.0.0.1",
            f"--port={self.port}",
            "--drain-timeout-seconds=10",
            *extra,
        ]
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return (
                response.status,
                response.read(),
                {k.lower(): v for k, v in response.getheaders()},
            )
        finally:
            connection.close()

    def json(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        status, payload, _ = self.request(method, path, body)
        return status, json.loads(payload)

    def wait_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.logs()
            with contextlib.suppress(OSError):
                self.request("GET", "/v2/health/live")
                return
            time.sleep(0.05)
        raise AssertionError(f"server did not listen within {timeout} s\n{self.logs()}")

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait_listening()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.logs()
            if self.request("GET", "/v2/health/ready")[0] == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"server not ready within {timeout} s\n{self.logs()}")

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode
