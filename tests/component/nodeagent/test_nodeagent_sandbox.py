"""A real container sandbox (netns, overlay, volumes, identity) without an apiserver.

Needs root, `ip` and overlayfs, like the node agent itself. Uses its own bridge and
address range so it never touches a running dev cluster.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiln.devcluster.nodeagent import cgroups, network, procscan
from kiln.devcluster.nodeagent.cleanup import cleanup
from kiln.devcluster.nodeagent.containers import (
    ContainerDir,
    adopt_attempt,
    monitor_server,
    start_attempt,
    stop_attempt,
)
from kiln.devcluster.nodeagent.ipam import IpamStore
from kiln.devcluster.nodeagent.main import runtime_paths, traverse_dirs

pytestmark = [pytest.mark.component, pytest.mark.timeout(60)]

BRIDGE = "kilntest0"
CIDR = ipaddress.IPv4Network("10.251.0.0/24")
GATEWAY = ipaddress.IPv4Address("10.251.0.1")
POD_UID = "0c0ffee0-0000-4000-8000-000000000001"
POD_IP = "10.251.0.5"


@pytest.fixture
def pod_network(tmp_path: Path) -> Iterator[network.PodNetwork]:
    network.ensure_bridge(BRIDGE, GATEWAY, CIDR)
    IpamStore(tmp_path / "ipam.json", CIDR, GATEWAY).acquire(POD_UID)
    (tmp_path / "pods" / POD_UID).mkdir(parents=True)
    yield network.setup_pod_network(POD_UID, POD_IP, BRIDGE, GATEWAY, CIDR)
    cleanup(tmp_path, BRIDGE)


def spec_for(argv: list[str], net: network.PodNetwork, **extra: Any) -> dict[str, Any]:
    return {
        "argv": argv,
        "env": {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/"},
        "hostname": "sandbox-pod",
        "netns": net.netns_path,
        "traverse": traverse_dirs(runtime_paths()),
        "mask": [],
        "mounts": [],
        **extra,
    }


PROBE = """
import json, os, socket
report = {
    "uid": os.getuid(), "gid": os.getgid(), "hostname": socket.gethostname(),
    "volume": open("/models/input.txt").read(),
    "addresses": open("/proc/net/fib_trie").read().count("10.251.0.5") > 0,
    "cwd": os.getcwd(),
    "env": os.environ.get("GREETING"),
}
try:
    open("/models/readonly-write", "w")
    report["volume_writable"] = True
except OSError:
    report["volume_writable"] = False
os.makedirs("/scratch-area/x", exist_ok=True)
open("/dev/termination-log", "w").write("bye")
print(json.dumps(report), flush=True)
"""


def test_container_sees_its_sandbox_and_host_root_stays_clean(
    tmp_path: Path, pod_network: network.PodNetwork
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "input.txt").write_text("weights")
    directory = ContainerDir(tmp_path / "pods" / POD_UID / "containers" / "main")
    directory.prepare_attempt()
    spec = spec_for(
        ["python3", "-c", PROBE],
        pod_network,
        uid=1000,
        gid=1000,
        workingDir="/work/dir",
        env={
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "GREETING": "hi",
        },
        mounts=[
            {"source": str(volume), "target": "/models", "readOnly": True},
            {
                "source": str(directory.termination_log),
                "target": "/dev/termination-log",
                "readOnly": False,
            },
        ],
    )
    # root may create the scratch dir; the unprivileged process can then write inside it
    spec["argv"][2] = PROBE.replace('os.makedirs("/scratch-area/x", exist_ok=True)', "")

    async def run() -> dict[str, Any]:
        attempt = await start_attempt(directory, spec)
        await asyncio.wait_for(attempt.exited.wait(), 20)
        return json.loads(directory.exit.read_text())

    result = asyncio.run(run())
    assert result["exitCode"] == 0, directory.log.read_text()
    line = directory.log.read_text().splitlines()[-1].split(" ", 3)[3]
    report = json.loads(line)
    assert report == {
        "uid": 1000,
        "gid": 1000,
        "hostname": "sandbox-pod",
        "volume": "weights",
        "addresses": True,
        "cwd": "/work/dir",
        "env": "hi",
        "volume_writable": False,
    }
    assert directory.termination_log.read_text() == "bye"
    assert not Path("/work/dir").exists()  # created in the pod's overlay only
    assert oct(os.stat("/root").st_mode & 0o777) == oct(0o700)  # chmod only in upper layer


def test_pod_is_reachable_from_the_host(tmp_path: Path, pod_network: network.PodNetwork) -> None:
    directory = ContainerDir(tmp_path / "pods" / POD_UID / "containers" / "web")
    directory.prepare_attempt()
    # socketserver, not http.server: HTTPServer resolves its hostname, which needs the
    # /etc/hosts the pod worker mounts (not part of this test)
    server = (
        "import socketserver as s; s.TCPServer(('', 8080), s.BaseRequestHandler).serve_forever()"
    )

    async def run() -> int:
        attempt = await start_attempt(directory, spec_for(["python3", "-c", server], pod_network))
        try:
            for _ in range(100):
                try:
                    _, writer = await asyncio.open_connection(POD_IP, 8080)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"pod never answered: {directory.log.read_text()}")
        finally:
            await stop_attempt(attempt, 5)
        return int(json.loads(directory.exit.read_text())["exitCode"])

    assert asyncio.run(run()) == 128 + signal.SIGTERM


def test_exec_failure_is_a_start_error(tmp_path: Path, pod_network: network.PodNetwork) -> None:
    directory = ContainerDir(tmp_path / "pods" / POD_UID / "containers" / "bad")
    directory.prepare_attempt()
    from kiln.devcluster.nodeagent.containers import StartFailed

    async def run() -> str:
        with pytest.raises(StartFailed) as raised:
            await start_attempt(directory, spec_for(["no-such-program"], pod_network))
        return str(raised.value)

    assert "executable file not found" in asyncio.run(run())
    assert json.loads(directory.exit.read_text())["reason"] == "StartError"


def test_container_outlives_the_monitor_fork_server(
    tmp_path: Path, pod_network: network.PodNetwork
) -> None:
    """The agent restarting (its fork server gone) leaves containers running and adoptable."""
    first = ContainerDir(tmp_path / "pods" / POD_UID / "containers" / "first")
    second = ContainerDir(tmp_path / "pods" / POD_UID / "containers" / "second")
    for directory in (first, second):
        directory.prepare_attempt()

    async def run() -> tuple[bool, int]:
        attempt = await start_attempt(first, spec_for(["sleep", "300"], pod_network))
        server = monitor_server(str(tmp_path / "pods"))
        assert server.process is not None
        server_pid = server.process.pid
        server.close()  # as when the agent exits
        assert not procscan.is_alive(server_pid)
        adopted = adopt_attempt(first)
        assert adopted is not None and adopted.pid == attempt.pid
        alive = not adopted.exited.is_set() and procscan.is_alive(attempt.pid)
        # the next start gets a new fork server
        other = await start_attempt(second, spec_for(["true"], pod_network))
        await asyncio.wait_for(other.exited.wait(), 10)
        await stop_attempt(adopted, 5)
        await asyncio.wait_for(attempt.exited.wait(), 10)
        return alive, int(json.loads(second.exit.read_text())["exitCode"])

    assert asyncio.run(run()) == (True, 0)
    assert json.loads(first.exit.read_text())["signal"] == signal.SIGTERM


HOG = """
import sys
print(open("/proc/self/cgroup").read(), flush=True)
data = b"x" * (int(sys.argv[1]) << 20)
print("allocated", len(data) >> 20, flush=True)
"""


def test_memory_limit_binds_the_program_and_oom_kills_are_counted(
    tmp_path: Path, pod_network: network.PodNetwork
) -> None:
    memory = cgroups.MemoryCgroups.setup(BRIDGE)
    limit = 64 << 20

    async def run(name: str, megabytes: int) -> tuple[dict[str, Any], Path, str]:
        directory = ContainerDir(tmp_path / "pods" / POD_UID / "containers" / name)
        directory.prepare_attempt()
        cgroup = memory.create(POD_UID, name, 1, limit)
        spec = spec_for(["python3", "-c", HOG, str(megabytes)], pod_network, cgroup=str(cgroup))
        attempt = await start_attempt(directory, spec)
        await asyncio.wait_for(attempt.exited.wait(), 30)
        return json.loads(directory.exit.read_text()), cgroup, directory.log.read_text()

    hog, hog_cgroup, hog_log = asyncio.run(run("hog", 300))
    fits, fits_cgroup, fits_log = asyncio.run(run("fits", 16))

    # The program itself (not just the monitor's child before exec) runs in the cgroup.
    relative = "/" + str(hog_cgroup.relative_to(memory.hierarchy.mount))
    assert relative in hog_log, hog_log
    limit_file = "memory.limit_in_bytes" if memory.hierarchy.version == 1 else "memory.max"
    assert int((hog_cgroup / limit_file).read_text()) == limit
    assert (hog["exitCode"], hog.get("signal")) == (137, signal.SIGKILL), hog_log
    assert "allocated" not in hog_log
    assert cgroups.oom_kills(hog_cgroup) == 1

    assert fits["exitCode"] == 0, fits_log
    assert "allocated 16" in fits_log
    assert cgroups.oom_kills(fits_cgroup) == 0

    assert cgroups.remove_empty(hog_cgroup) and not hog_cgroup.exists()


def test_no_memory_controller_means_limits_are_unenforced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host whose only cgroup mount lacks `memory` (as this hybrid host's unified mount)."""
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    )
    monkeypatch.setattr(cgroups, "MOUNTINFO", mountinfo)
    unified = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    if unified.exists():
        assert "memory" not in unified.read_text().split()
    with pytest.raises(cgroups.CgroupUnavailable, match="no memory cgroup controller"):
        cgroups.MemoryCgroups.setup(BRIDGE)
    assert cgroups.node_roots(BRIDGE) == []


def test_cleanup_after_agent_sigkill_leaves_nothing(tmp_path: Path) -> None:
    """The agent dies hard; `cleanup` must still remove processes, netns, veth, bridge and
    memory cgroups."""
    network.ensure_bridge(BRIDGE, GATEWAY, CIDR)
    IpamStore(tmp_path / "ipam.json", CIDR, GATEWAY).acquire(POD_UID)
    (tmp_path / "pods" / POD_UID).mkdir(parents=True)
    net = network.setup_pod_network(POD_UID, POD_IP, BRIDGE, GATEWAY, CIDR)
    directory = ContainerDir(tmp_path / "pods" / POD_UID / "containers" / "sleeper")
    directory.prepare_attempt()
    cgroup = cgroups.MemoryCgroups.setup(BRIDGE).create(POD_UID, "sleeper", 1, 256 << 20)
    # a grandchild in its own session escapes the container's process group
    spec = spec_for(["sh", "-c", "sleep 300 & setsid sleep 301 & wait"], net, cgroup=str(cgroup))
    agent_script = (
        "import asyncio, json, sys, time\n"
        "from pathlib import Path\n"
        "from kiln.devcluster.nodeagent.containers import ContainerDir, start_attempt\n"
        "async def main():\n"
        "    d = ContainerDir(Path(sys.argv[1]))\n"
        "    attempt = await start_attempt(d, json.loads(sys.argv[2]))\n"
        "    print(attempt.pid, flush=True)\n"
        "    await asyncio.sleep(300)\n"
        "asyncio.run(main())\n"
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", agent_script, str(directory.path), json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert agent.stdout is not None
    pid = int(agent.stdout.readline())
    agent.kill()  # SIGKILL: the agent gets no chance to clean up
    agent.wait()
    inode = network.netns_inode(net.netns)
    assert inode is not None and procscan.pids_in_netns({inode})
    assert pid in [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]

    subprocess.run(
        [sys.executable, "-m", "kiln.devcluster.nodeagent.main", "cleanup",
         "--state-dir", str(tmp_path), "--bridge", BRIDGE],
        check=True,
    )  # fmt: skip

    assert not procscan.is_alive(pid)  # dead (a zombie until init reaps it is fine)
    assert not [p for p in procscan.pids_in_netns({inode}) if procscan.is_alive(p)]
    leftovers = procscan.pids_with_cmdline(lambda argv: str(tmp_path) in " ".join(argv))
    assert not [p for p in leftovers if procscan.is_alive(p)]
    assert not Path(net.netns_path).exists()
    assert not Path("/sys/class/net", net.host_veth).exists()
    assert not Path("/sys/class/net", BRIDGE).exists()
    with open("/proc/self/mountinfo") as mounts:
        assert str(tmp_path) not in mounts.read()
    assert not cgroup.exists()
    assert cgroups.node_roots(BRIDGE) == []
