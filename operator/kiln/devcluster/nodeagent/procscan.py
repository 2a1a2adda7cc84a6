"""Finding and stopping host processes that belong to pods (by /proc inspection)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable


def start_ticks(pid: int) -> int | None:
    """Process start time (clock ticks after boot): tells a live pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_same_process(pid: int, ticks: int | None) -> bool:
    current = start_ticks(pid)
    return current is not None and (ticks is None or current == ticks)


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def pids_in_netns(inodes: set[int]) -> list[int]:
    found = []
    for pid in all_pids():
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino in inodes:
                found.append(pid)
        except OSError:
            continue
    return found


def pids_with_cmdline(predicate: Callable[[list[str]], bool]) -> list[int]:
    found = []
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and predicate(argv):
            found.append(pid)
    return found


def kill_all(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Pids still alive (and not zombies) after `timeout` seconds."""
    remaining = list(pids)
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        for pid in remaining:
            with contextlib.suppress(ChildProcessError):  # reap our children, ignore others
                os.waitpid(pid, os.WNOHANG)
        remaining = [pid for pid in remaining if is_alive(pid)]
        if remaining:
            time.sleep(0.05)
    return remaining


def is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
