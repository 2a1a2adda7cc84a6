"""Running one container attempt through the monitor (`shim.py`) and stopping it.

Per container the agent keeps a directory with the monitor's spec, the `state.json` /
`exit.json` it writes, the termination-log file bound into the container, and the log of
the current and the previous attempt (what `kubectl logs [--previous]` serves).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.devcluster.nodeagent import procscan

SHIM = Path(__file__).resolve().with_name("shim.py")
log = logging.getLogger(__name__)


@dataclass
class ContainerDir:
    path: Path

    @property
    def spec(self) -> Path:
        return self.path / "spec.json"

    @property
    def state(self) -> Path:
        return self.path / "state.json"

    @property
    def exit(self) -> Path:
        return self.path / "exit.json"

    @property
    def record(self) -> Path:
        return self.path / "record.json"

    @property
    def termination_log(self) -> Path:
        return self.path / "termination-log"

    @property
    def scratch(self) -> Path:
        return self.path / "scratch"

    @property
    def log(self) -> Path:
        return self.path / "current.log"

    @property
    def previous_log(self) -> Path:
        return self.path / "previous.log"

    def prepare_attempt(self) -> None:
        """Fresh files for a new attempt; the last attempt's log becomes `previous`."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(exist_ok=True)
        for stale in (self.state, self.exit):
            stale.unlink(missing_ok=True)
        if self.log.exists():
            os.replace(self.log, self.previous_log)
        self.termination_log.write_bytes(b"")
        self.termination_log.chmod(0o666)  # any runAsUser may write its message

    def read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        except (FileNotFoundError, json.JSONDecodeError):
            return None


def read_json_file(path: Path) -> dict[str, Any] | None:
    return ContainerDir(path.parent).read_json(path)


@dataclass
class Attempt:
    """One running container process, started by us or adopted after an agent restart."""

    pid: int
    monitor_pid: int
    started_at: str
    exited: asyncio.Event

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, sig)


class StartFailed(Exception):
    pass


class MonitorServer:
    """The agent's end of a `shim.py --serve` fork server (see `shim.py`).

    One per pods dir and event loop, started on first use; requests are serialised (a
    fork takes a millisecond or two). If the server dies it is started again for the
    next request; a request that may have reached it is never repeated.
    """

    def __init__(self, tag: str):
        self.tag = tag
        self.loop = asyncio.get_running_loop()
        self.lock = asyncio.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None and self.sock is not None:
            return
        self.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(SHIM), "--serve", self.tag, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
                env={},
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()  # the server exits on EOF
            self.sock = None
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2)
            self.process = None

    async def launch(self, spec_path: Path, stdout_fd: int, stderr_fd: int) -> tuple[int, int]:
        """Fork a monitor for `spec_path`; returns its pid and a pidfd."""
        async with self.lock:
            try:
                self.start()
                assert self.sock is not None
                socket.send_fds(self.sock, [str(spec_path).encode()], [stdout_fd, stderr_fd])
            except OSError as exc:
                self.close()
                raise _ServerUnavailable(str(exc)) from exc
            sock = self.sock
            try:
                while True:
                    try:
                        message, fds, _, _ = socket.recv_fds(sock, 64, 1)
                        break
                    except BlockingIOError:
                        ready = self.loop.create_future()
                        self.loop.add_reader(sock.fileno(), ready.set_result, None)
                        try:
                            await ready
                        finally:
                            self.loop.remove_reader(sock.fileno())
            except OSError as exc:
                self.close()
                raise StartFailed(f"container monitor server failed: {exc}") from exc
            if not message or not fds:
                for fd in fds:
                    os.close(fd)
                self.close()
                raise StartFailed("container monitor server died during start")
            return int(message), fds[0]


class _ServerUnavailable(Exception):
    pass


_servers: dict[str, MonitorServer] = {}


def monitor_server(tag: str) -> MonitorServer:
    """The fork server for this pods dir in the running event loop (started lazily)."""
    server = _servers.get(tag)
    if server is None or server.loop is not asyncio.get_running_loop():
        if server is not None:
            server.close()
        server = _servers[tag] = MonitorServer(tag)
    return server


def _exit_event(pidfd: int) -> asyncio.Event:
    """Set when the process behind `pidfd` has exited (it need not be our child)."""
    exited = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        exited.set()

    loop.add_reader(pidfd, on_exit)
    return exited


async def _read_line(fd: int) -> str:
    """One line from a pipe without blocking the loop (the monitor's announcement)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0)
    )
    try:
        return (await reader.readline()).decode().strip()
    finally:
        transport.close()


async def _start_via_server(directory: ContainerDir, monitor_log: int) -> Attempt | None:
    """Start the monitor through the fork server; None if the server cannot be used."""
    # Tag = the pods dir (<state>/pods/<uid>/containers/<name>), which `cleanup` knows.
    server = monitor_server(str(directory.path.parents[2]))
    read_fd, write_fd = os.pipe()
    try:
        monitor_pid, pidfd = await server.launch(directory.spec, write_fd, monitor_log)
    except _ServerUnavailable as exc:
        log.warning("monitor fork server unavailable, spawning", extra={"error": str(exc)})
        os.close(read_fd)
        return None
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)  # the monitor holds its own copy
    exited = _exit_event(pidfd)
    line = await _read_line(read_fd)
    if not line.startswith("started "):
        await exited.wait()
        raise StartFailed(line.removeprefix("failed ") or "container monitor died during start")
    state = directory.read_json(directory.state) or {}
    return Attempt(int(line.split()[1]), monitor_pid, state.get("startedAt", ""), exited)


async def start_attempt(directory: ContainerDir, spec: dict[str, Any]) -> Attempt:
    """Spawn the monitor; returns once the container process has exec'd."""
    full_spec = {
        **spec,
        "scratch": str(directory.scratch),
        "stateFile": str(directory.state),
        "exitFile": str(directory.exit),
        "logFile": str(directory.log),
    }
    directory.spec.write_text(json.dumps(full_spec))
    monitor_log = os.open(directory.path / "monitor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        attempt = await _start_via_server(directory, monitor_log)
        if attempt is not None:
            return attempt
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", str(SHIM), str(directory.spec),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=monitor_log,
            start_new_session=True,
            env={},
        )  # fmt: skip
    finally:
        os.close(monitor_log)
    assert process.stdout is not None
    line = (await process.stdout.readline()).decode().strip()
    exited = asyncio.Event()
    if not line.startswith("started "):
        await process.wait()
        raise StartFailed(line.removeprefix("failed ") or "container monitor died during start")

    async def reap() -> None:
        await process.wait()
        exited.set()

    state = directory.read_json(directory.state) or {}
    attempt = Attempt(int(line.split()[1]), process.pid, state.get("startedAt", ""), exited)
    attempt_task = asyncio.get_running_loop().create_task(reap())
    _background.add(attempt_task)
    attempt_task.add_done_callback(_background.discard)
    return attempt


_background: set[asyncio.Task[None]] = set()


def adopt_attempt(directory: ContainerDir) -> Attempt | None:
    """The attempt a previous agent left running, if its monitor is still alive."""
    state = directory.read_json(directory.state)
    if state is None or directory.exit.exists():
        return None
    monitor_pid = int(state["monitorPid"])
    if not procscan.is_same_process(int(state["pid"]), state.get("pidStartTicks")):
        return None
    if procscan.start_ticks(monitor_pid) is None:
        return None
    try:
        pidfd = os.pidfd_open(monitor_pid)
    except ProcessLookupError:
        return None
    exited = _exit_event(pidfd)
    return Attempt(int(state["pid"]), monitor_pid, state.get("startedAt", ""), exited)


async def stop_attempt(attempt: Attempt, grace_seconds: float) -> None:
    """SIGTERM, then SIGKILL after the grace period, like a runtime's StopContainer."""
    if attempt.exited.is_set():
        return
    attempt.signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(attempt.exited.wait(), timeout=max(grace_seconds, 0.0))
        return
    except TimeoutError:
        pass
    attempt.signal(signal.SIGKILL)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(attempt.exited.wait(), timeout=10)


async def exec_in_container(
    attempt: Attempt,
    argv: list[str],
    env: dict[str, str],
    uid: int,
    gid: int,
    limit_seconds: float,
) -> tuple[int, bytes]:
    """Run a command in the container's namespaces and root (exec probes, preStop)."""
    process = await asyncio.create_subprocess_exec(
        "nsenter", "-t", str(attempt.pid), "-n", "-m", "-u", "-i", "-r", "-w",
        "-S", str(uid), "-G", str(gid), "--", *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=limit_seconds)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return -1, b"timeout"
    return process.returncode or 0, output
