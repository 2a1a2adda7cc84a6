"""Container memory limits with cgroups, and OOM-kill detection.

A container with `resources.limits.memory` runs in a memory cgroup of its own, one per
attempt (as a runtime gives each container instance a new cgroup):

    <memory hierarchy>/kiln/<node key>/<pod uid>/<container>/<attempt>

The node key is the agent's bridge name, which already tells one agent's pods from
another's (netns, veths). The hierarchy is the cgroup v1 `memory` controller when it is
mounted (hybrid hosts), else a cgroup v2 mount offering the `memory` controller. The
monitor's child joins the cgroup before it builds the sandbox and execs (see `shim.py`),
so the program never runs unlimited. The kernel counts OOM kills per cgroup
(`oom_kill` in v1 `memory.oom_control`, v2 `memory.events`); a non-zero count when the
attempt ends makes its terminated reason `OOMKilled`.

The pure part (naming, quantities, parsing) is unit-tested; `MemoryCgroups` and the
removal helpers touch /sys/fs/cgroup.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.devcluster.nodeagent.quantity import parse_quantity

log = logging.getLogger(__name__)

TOP = "kiln"  # <hierarchy>/kiln/<node key>/...
MOUNTINFO = Path("/proc/self/mountinfo")
OOM_COUNTER_FILES = ("memory.oom_control", "memory.events")  # v1, v2


class CgroupUnavailable(Exception):
    """No memory cgroup this agent can use: limits are not enforced."""


# -- pure ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hierarchy:
    version: int  # 1: the v1 `memory` controller's own mount; 2: a unified mount
    mount: Path


def parse_mountinfo(text: str) -> list[tuple[Path, str, set[str]]]:
    """(mount point, filesystem type, super options) of each line of /proc/*/mountinfo."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if dash < 5 or len(fields) < dash + 3:
            continue
        point = fields[4].replace("\\040", " ")
        mounts.append((Path(point), fields[dash + 1], set(fields[dash + 3].split(","))))
    return mounts


def find_memory_hierarchy(
    mountinfo: str, v2_controllers: Callable[[Path], str]
) -> Hierarchy | None:
    """Where memory cgroups live: the v1 `memory` mount first (a hybrid host has both and
    its unified mount lacks the controller), else a v2 mount whose root offers `memory`.

    `v2_controllers(mount)` returns the mount's `cgroup.controllers` ("" if unreadable).
    """
    mounts = parse_mountinfo(mountinfo)
    for point, fstype, options in mounts:
        if fstype == "cgroup" and "memory" in options:
            return Hierarchy(1, point)
    for point, fstype, _ in mounts:
        if fstype == "cgroup2" and "memory" in v2_controllers(point).split():
            return Hierarchy(2, point)
    return None


def memory_limit_bytes(container: Mapping[str, Any]) -> int | None:
    """`resources.limits.memory` in bytes (rounded up, as kubelet's Value()), or None."""
    limits = (container.get("resources") or {}).get("limits") or {}
    raw = limits.get("memory")
    if raw is None:
        return None
    value = parse_quantity(raw)
    if value <= 0:
        return None
    return math.ceil(value)


def check_node_key(key: str) -> str:
    if not key or "/" in key or key in (".", ".."):
        raise ValueError(f"invalid cgroup node key {key!r}")
    return key


def node_root(hierarchy_mount: Path, key: str) -> Path:
    return hierarchy_mount / TOP / check_node_key(key)


def container_cgroup(root: Path, pod_uid: str, container: str, attempt: int) -> Path:
    """The cgroup of one attempt; Kubernetes names (UIDs, DNS labels) are path-safe."""
    for part in (pod_uid, container):
        check_node_key(part)
    return root / pod_uid / container / str(attempt)


def oom_kill_count(text: str) -> int:
    """The `oom_kill N` line of v1 `memory.oom_control` or v2 `memory.events` (0 if none)."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "oom_kill":
            return int(fields[1])
    return 0


# -- the kernel ---------------------------------------------------------------------------
def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def memory_hierarchy() -> Hierarchy | None:
    return find_memory_hierarchy(_read(MOUNTINFO), lambda m: _read(m / "cgroup.controllers"))


def _cgroup_mounts() -> list[Path]:
    """Every cgroup mount that could hold our memory cgroups (v1 memory, any v2)."""
    found = []
    for point, fstype, options in parse_mountinfo(_read(MOUNTINFO)):
        if (fstype == "cgroup" and "memory" in options) or fstype == "cgroup2":
            found.append(point)
    return found


def node_roots(key: str) -> list[Path]:
    """This node's existing cgroup trees, in whichever hierarchy they are (for cleanup)."""
    return [root for root in (node_root(m, key) for m in _cgroup_mounts()) if root.is_dir()]


def oom_kills(cgroup: Path) -> int | None:
    """OOM kills the kernel counted in `cgroup`; None if it cannot be read."""
    for name in OOM_COUNTER_FILES:
        try:
            return oom_kill_count((cgroup / name).read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            return None
    return None


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _enable_memory_controller(cgroup: Path) -> None:
    """v2: let the children of `cgroup` use the memory controller."""
    control = cgroup / "cgroup.subtree_control"
    if "memory" not in _read(control).split():
        _write(control, "+memory")


def _procs(cgroup: Path) -> list[int]:
    return [int(p) for p in _read(cgroup / "cgroup.procs").split() if p.strip().isdigit()]


def remove_tree(top: Path, timeout: float = 5.0) -> list[Path]:
    """Kill the processes left in `top` and below, then remove the cgroups bottom-up.

    Returns the cgroups that could not be removed. A missing `top` is fine.
    """
    if not top.is_dir():
        return []
    cgroups = sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda p: len(p.parts))
    deadline = time.monotonic() + timeout
    left: list[Path] = []
    for cgroup in reversed(cgroups):
        while True:
            for pid in _procs(cgroup):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            try:
                cgroup.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    log.warning(
                        "cgroup not removed", extra={"cgroup": str(cgroup), "error": str(exc)}
                    )
                    left.append(cgroup)
                    break
                time.sleep(0.05)  # killed processes take a moment to leave
    return left


def remove_empty(cgroup: Path) -> bool:
    """rmdir one cgroup if it has no processes and no children; False if it stays."""
    try:
        cgroup.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def remove_node(key: str) -> list[Path]:
    """`cleanup`: remove this node's cgroups everywhere, then `kiln/` if nothing else uses it."""
    left: list[Path] = []
    for root in node_roots(key):
        left += remove_tree(root)
        remove_empty(root.parent)  # another agent's tree keeps it
    return left


@dataclass(frozen=True)
class MemoryCgroups:
    """This node's memory cgroup tree (`<hierarchy>/kiln/<node key>`), known to be usable."""

    hierarchy: Hierarchy
    root: Path

    @classmethod
    def setup(cls, key: str) -> MemoryCgroups:
        """Find the memory hierarchy and create this node's tree; CgroupUnavailable if not."""
        hierarchy = memory_hierarchy()
        if hierarchy is None:
            raise CgroupUnavailable(
                "no memory cgroup controller is mounted (cgroup v1 `memory`, or cgroup v2 "
                "offering `memory`)"
            )
        root = node_root(hierarchy.mount, key)
        try:
            if hierarchy.version == 2:
                _enable_memory_controller(hierarchy.mount)
            root.mkdir(parents=True, exist_ok=True)
            if hierarchy.version == 2:
                _enable_memory_controller(root.parent)
                _enable_memory_controller(root)
        except OSError as exc:
            raise CgroupUnavailable(f"cannot create {root}: {exc.strerror or exc}") from exc
        limit_file = "memory.limit_in_bytes" if hierarchy.version == 1 else "memory.max"
        if not (root / limit_file).exists():
            raise CgroupUnavailable(f"{root} has no {limit_file}")
        return cls(hierarchy, root)

    @property
    def description(self) -> str:
        return f"cgroup v{self.hierarchy.version} memory controller, {self.root}"

    def pod(self, pod_uid: str) -> Path:
        return self.root / check_node_key(pod_uid)

    def create(self, pod_uid: str, container: str, attempt: int, limit: int) -> Path:
        """A fresh cgroup for one attempt, limited to `limit` bytes (swap not allowed)."""
        path = container_cgroup(self.root, pod_uid, container, attempt)
        v2 = self.hierarchy.version == 2
        # From the node's root down: a `cleanup` of an idle node may have removed it.
        for parent in (self.root.parent, self.root, path.parent.parent, path.parent):
            parent.mkdir(exist_ok=True)
            if v2:
                _enable_memory_controller(parent)
        if path.exists() and not remove_empty(path):  # a crashed agent's half-started attempt
            raise OSError(errno.EBUSY, f"{path} is still in use")
        path.mkdir()
        try:
            if v2:
                _write(path / "memory.max", str(limit))
                self._best_effort(path / "memory.swap.max", "0")
                self._best_effort(path / "memory.oom.group", "1")  # as kubelet on v2
            else:
                _write(path / "memory.limit_in_bytes", str(limit))
                # Swap must not stretch the limit: no swapping, and memory+swap = limit.
                self._best_effort(path / "memory.swappiness", "0")
                self._best_effort(path / "memory.memsw.limit_in_bytes", str(limit))
        except BaseException:
            remove_empty(path)
            raise
        return path

    @staticmethod
    def _best_effort(path: Path, value: str) -> None:
        if not path.exists():
            return
        try:
            _write(path, value)
        except OSError as exc:
            log.debug("cgroup setting refused", extra={"file": str(path), "error": str(exc)})
