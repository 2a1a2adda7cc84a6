"""The nodes' cgroup roots, on a fake cgroup filesystem laid out like a v1 or v2 host."""

from __future__ import annotations

from pathlib import Path

import pytest

from kilndev import cgroups

pytestmark = pytest.mark.unit


def _v1(fs: Path) -> Path:
    for controller in ("cpuset", "memory", "pids", "cpu,cpuacct"):
        (fs / controller).mkdir(parents=True)
        (fs / controller / "cgroup.procs").write_text("")
    (fs / "cpu").symlink_to(fs / "cpu,cpuacct")
    (fs / "unified").mkdir()  # the hybrid host's v2 mount: not a place for the kubelet
    (fs / "unified" / "cgroup.procs").write_text("")
    (fs / "cpuset" / "cpuset.cpus").write_text("0-1\n")
    (fs / "cpuset" / "cpuset.mems").write_text("0\n")
    return fs


def test_v1_roots_are_made_in_every_controller_with_cpus_copied(tmp_path: Path) -> None:
    fs = _v1(tmp_path)
    assert cgroups.is_v1(fs)
    assert [h.name for h in cgroups.hierarchies(fs)] == ["cpu,cpuacct", "cpuset", "memory", "pids"]
    cgroups.create_root("/kiln/kiln-node", fs)
    for controller in ("cpuset", "memory", "pids", "cpu,cpuacct"):
        assert (fs / controller / "kiln" / "kiln-node").is_dir()
    assert (fs / "cpuset/kiln/kiln-node/cpuset.cpus").read_text() == "0-1\n"
    assert (fs / "cpuset/kiln/kiln-node/cpuset.mems").read_text() == "0\n"
    assert not (fs / "unified" / "kiln").exists()
    assert cgroups.leftovers(fs)


def test_v2_root_enables_the_controllers_down_to_the_node(tmp_path: Path) -> None:
    fs = tmp_path
    (fs / "cgroup.controllers").write_text("cpu memory pids\n")
    (fs / "cgroup.subtree_control").write_text("")
    assert not cgroups.is_v1(fs)
    (fs / "kiln").mkdir()
    (fs / "kiln" / "cgroup.controllers").write_text("cpu memory pids\n")
    cgroups.create_root("/kiln/kiln-node", fs)
    assert (fs / "kiln" / "kiln-node").is_dir()
    assert (fs / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (fs / "kiln" / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"


def test_processes_are_found_and_empty_trees_removed(tmp_path: Path) -> None:
    fs = _v1(tmp_path)
    pod = fs / "memory" / "kiln" / "kiln-node" / "kubepods" / "pod1"
    pod.mkdir(parents=True)
    (pod / "cgroup.procs").write_text("123\n456\n")
    assert cgroups.processes_in_tree(fs) == {123, 456}
    (pod / "cgroup.procs").unlink()  # a real cgroup dir is empty to rmdir once procs left
    cgroups.remove_tree(fs)
    assert cgroups.leftovers(fs) == []
