"""Start, find and stop the cluster's long-running processes.

Each component runs in its own session (process group) with its output in
`logs/<name>.log` and its pid in `pids/<name>.pid`. Before signalling a recorded pid we
check that it still runs the program we started, so a recycled pid is never killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def _pid_file(pids_dir: Path, name: str) -> Path:
    return pids_dir / f"{name}.pid"


def _cmdline(pid: int) -> list[str]:
    # A process in the middle of execve() briefly shows an empty cmdline: retry a little.
    for _ in range(20):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return []
        if raw:
            return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
        time.sleep(0.01)
    return []


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def running_pid(pids_dir: Path, name: str) -> int | None:
    """The pid of component `name` if it is alive and still the program we recorded."""
    path = _pid_file(pids_dir, name)
    try:
        pid_text, _, program = path.read_text().partition("\n")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    argv = _cmdline(pid)
    if not argv or _is_zombie(pid):
        return None
    # argv[0] of a Python console script is the interpreter, so look at argv[1] too.
    expected = Path(program.strip()).name
    if expected and not any(Path(a).name == expected for a in argv[:2]):
        return None
    return pid


def running_argv(pids_dir: Path, name: str) -> list[str] | None:
    """The command line component `name` runs with, if it is running."""
    pid = running_pid(pids_dir, name)
    return _cmdline(pid) if pid is not None else None


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    logs_dir: Path,
    pids_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` detached from us, logging to logs/<name>.log; returns its pid."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    pids_dir.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(logs_dir / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    _pid_file(pids_dir, name).write_text(f"{proc.pid}\n{argv[0]}\n")
    return proc.pid


def stop(pids_dir: Path, name: str, grace_seconds: float = 5.0) -> bool:
    """SIGTERM the component's process group, SIGKILL it after the grace period."""
    pid = running_pid(pids_dir, name)
    _pid_file(pids_dir, name).unlink(missing_ok=True)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    return bool(_cmdline(pid)) and not _is_zombie(pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
