from collections.abc import Callable
from pathlib import Path

import pytest

from kiln.devcluster.nodeagent.cgroups import (
    Hierarchy,
    container_cgroup,
    find_memory_hierarchy,
    memory_limit_bytes,
    node_root,
    oom_kill_count,
    parse_mountinfo,
)
from kiln.devcluster.nodeagent.node import memory_limit_annotations
from kiln.devcluster.nodeagent.podstatus import exit_reason

pytestmark = pytest.mark.unit

# /proc/self/mountinfo of a hybrid host: v1 controllers, plus a unified mount without memory.
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# A pure cgroup v2 host (systemd default).
UNIFIED = """\
22 27 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
28 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
"""
# cpu and memory co-mounted in one v1 hierarchy.
COMOUNTED = "35 31 0:32 / /sys/fs/cgroup/cpu,memory rw - cgroup cgroup rw,cpu,memory\n"


def controllers(available: dict[str, str]) -> Callable[[Path], str]:
    return lambda mount: available.get(str(mount), "")


def test_v1_memory_controller_wins_on_a_hybrid_host() -> None:
    found = find_memory_hierarchy(HYBRID, controllers({"/sys/fs/cgroup/unified": "hugetlb"}))
    assert found == Hierarchy(1, Path("/sys/fs/cgroup/memory"))


def test_v2_is_used_only_when_it_offers_memory() -> None:
    v2 = "cpuset cpu io memory hugetlb pids rdma misc"
    assert find_memory_hierarchy(UNIFIED, controllers({"/sys/fs/cgroup": v2})) == Hierarchy(
        2, Path("/sys/fs/cgroup")
    )
    assert find_memory_hierarchy(UNIFIED, controllers({"/sys/fs/cgroup": "cpu pids"})) is None
    no_memory_v1 = "\n".join(line for line in HYBRID.splitlines() if "memory" not in line)
    assert find_memory_hierarchy(no_memory_v1, controllers({})) is None


def test_comounted_v1_hierarchy_and_escaped_mount_points() -> None:
    assert find_memory_hierarchy(COMOUNTED, controllers({})) == Hierarchy(
        1, Path("/sys/fs/cgroup/cpu,memory")
    )
    spaced = "35 31 0:32 / /mnt/my\\040cgroups rw - cgroup cgroup rw,memory\n"
    assert parse_mountinfo(spaced) == [(Path("/mnt/my cgroups"), "cgroup", {"rw", "memory"})]
    # Optional fields (shared:N, master:N) sit before the separator.
    assert parse_mountinfo(UNIFIED)[1][:2] == (Path("/sys/fs/cgroup"), "cgroup2")


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"memory": "64Mi"}, 64 * 2**20),
        ({"memory": "1G"}, 10**9),
        ({"memory": "1.5Gi"}, 3 * 2**29),
        ({"memory": "500m"}, 1),  # millibytes round up, as kubelet's Value()
        ({"memory": 1048576}, 2**20),
        ({"memory": "0"}, None),
        ({"cpu": "2"}, None),
    ],
)
def test_memory_limit_in_bytes(limits: dict, expected: int | None) -> None:
    assert memory_limit_bytes({"name": "c", "resources": {"limits": limits}}) == expected


def test_requests_alone_set_no_limit() -> None:
    assert memory_limit_bytes({"resources": {"requests": {"memory": "1Gi"}}}) is None
    assert memory_limit_bytes({"name": "c"}) is None
    assert memory_limit_bytes({"resources": None}) is None


def test_cgroup_paths_are_per_node_pod_container_and_attempt() -> None:
    root = node_root(Path("/sys/fs/cgroup/memory"), "kiln0")
    assert root == Path("/sys/fs/cgroup/memory/kiln/kiln0")
    uid = "0c0ffee0-0000-4000-8000-000000000001"
    assert container_cgroup(root, uid, "trainer", 3) == root / uid / "trainer" / "3"


@pytest.mark.parametrize("bad", ["", "..", ".", "a/b"])
def test_path_parts_cannot_escape_the_tree(bad: str) -> None:
    with pytest.raises(ValueError):
        node_root(Path("/sys/fs/cgroup/memory"), bad)
    with pytest.raises(ValueError):
        container_cgroup(Path("/x"), bad, "main", 1)


def test_oom_kills_are_read_from_v1_oom_control_and_v2_memory_events() -> None:
    v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
    v2 = "low 0\nhigh 0\nmax 17\noom 1\noom_kill 1\noom_group_kill 0\n"
    assert oom_kill_count(v1) == 2
    assert oom_kill_count(v2) == 1
    assert oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n") == 0
    assert oom_kill_count("oom_kill_disable 0\nunder_oom 0\n") == 0  # kernels before 4.13


def test_oom_killed_reason_overrides_the_exit_code_reason() -> None:
    assert exit_reason(137, oom_killed=True) == "OOMKilled"
    assert exit_reason(137) == "Error"
    assert exit_reason(0) == "Completed"


def test_node_annotations_say_whether_memory_limits_are_enforced() -> None:
    enforced = memory_limit_annotations("cgroup v1 memory controller, /sys/fs/cgroup/memory/x")
    assert enforced["kiln.dev/memory-limits"] == "enforced"
    unenforced = memory_limit_annotations(None, "no memory cgroup controller is mounted")
    assert unenforced == {
        "kiln.dev/memory-limits": "unenforced",
        "kiln.dev/memory-limits-detail": "no memory cgroup controller is mounted",
    }
