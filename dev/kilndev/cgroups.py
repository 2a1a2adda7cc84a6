"""The nodes' cgroup roots on the host (`/kiln/<node>` in every hierarchy).

The kubelet (cgroupfs driver) creates its QoS and pod cgroups under its `cgroupRoot` but
requires that root to exist. On cgroup v1 every controller has its own hierarchy, and a new
cpuset cgroup starts with no CPUs or memory nodes, so those are copied from the parent.
`down` removes the trees bottom-up once no process is left in them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
TOP = "kiln"


def is_v1(fs: Path = CGROUP_FS) -> bool:
    """True on a v1 (or hybrid) host: the root is not itself the unified hierarchy."""
    return not (fs / "cgroup.controllers").exists()


def hierarchies(fs: Path = CGROUP_FS) -> list[Path]:
    """The mounted hierarchies to create roots in (one per v1 controller, or the v2 root)."""
    if not is_v1(fs):
        return [fs]
    found = []
    for entry in sorted(fs.iterdir()):
        # Skip the v2 mount of a hybrid host and the symlinks (cpu -> cpu,cpuacct).
        if entry.is_symlink() or not entry.is_dir() or entry.name == "unified":
            continue
        if (entry / "cgroup.procs").exists():
            found.append(entry)
    return found


def create_root(relative: str, fs: Path = CGROUP_FS) -> None:
    """Create `relative` (e.g. `/kiln/kiln-node`) in every hierarchy; idempotent."""
    parts = [p for p in relative.split("/") if p]
    for hierarchy in hierarchies(fs):
        current = hierarchy
        for part in parts:
            parent, current = current, current / part
            current.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                child, inherited = current / knob, parent / knob
                if inherited.exists() and not (child.exists() and child.read_text().strip()):
                    child.write_text(inherited.read_text())
        if not is_v1(fs):
            _enable_v2_controllers(hierarchy, parts)


def _enable_v2_controllers(root: Path, parts: list[str]) -> None:
    current = root
    for part in parts:
        available = (current / "cgroup.controllers").read_text().split()
        wanted = " ".join(f"+{c}" for c in available)
        if wanted:
            (current / "cgroup.subtree_control").write_text(wanted)
        current = current / part


def remove_tree(fs: Path = CGROUP_FS) -> None:
    """Remove `/kiln` and everything under it, deepest first (rmdir: only empty cgroups)."""
    for hierarchy in hierarchies(fs):
        top = hierarchy / TOP
        if not top.exists():
            continue
        dirs = [Path(d) for d, _, _ in os.walk(top)]
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()


def leftovers(fs: Path = CGROUP_FS) -> list[str]:
    return [f"cgroup {h / TOP}" for h in hierarchies(fs) if (h / TOP).exists()]


def processes_in_tree(fs: Path = CGROUP_FS) -> set[int]:
    """Every pid in any cgroup under `/kiln` (the nodes' containers and their shims' children)."""
    pids: set[int] = set()
    for hierarchy in hierarchies(fs):
        top = hierarchy / TOP
        if not top.exists():
            continue
        for d, _, _ in os.walk(top):
            with contextlib.suppress(OSError):
                pids |= {int(p) for p in (Path(d) / "cgroup.procs").read_text().split()}
    return pids
