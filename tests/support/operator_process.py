"""`kiln-operator --standalone` as a child process, as a developer runs it on a cluster.

The one launcher of the e2e tests and the benchmarks: a test can SIGKILL it (a node dying)
and start it again, read its /metrics, and print its log when something failed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.support.ports import LOOPBACK, free_port

KILN_OPERATOR = str(Path(sys.executable).parent / "kiln-operator")


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log: Path, env: Mapping[str, str]) -> None:
        """`env` is the whole environment but KUBECONFIG and the metrics port."""
        self.kubeconfig = kubeconfig
        self.log = log
        self.env = dict(env)
        self.metrics_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {
            **self.env,
            "KUBECONFIG": str(self.kubeconfig),
            "KILN_METRICS_PORT": str(self.metrics_port),
        }
        command = [
            KILN_OPERATOR,
            "--standalone",
            f"--liveness=http://{LOOPBACK}:{free_port()}/healthz",
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown, as when a node dies."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.metrics_port}/metrics") as r:
            return str(r.read().decode())

    def log_tail(self, size: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""
