"""`kiln-node-agent cleanup`: remove every trace of the node from the host.

Works from what is on disk and in the kernel, so it also cleans up after an agent that
was SIGKILLed: container monitors and processes, every process inside one of our network
namespaces, the namespaces themselves (their veths go with them), leftover veths on the
bridge, the bridge, the node's memory cgroups (`kiln/<bridge>` in each cgroup
hierarchy) and any mount under the state dir.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from kiln.devcluster.config import GATEWAY_IP, POD_CIDR
from kiln.devcluster.nodeagent import cgroups, network, procscan
from kiln.devcluster.nodeagent.agent import remove_pod_leftovers
from kiln.devcluster.nodeagent.containers import SHIM
from kiln.devcluster.nodeagent.ipam import IpamStore

log = logging.getLogger(__name__)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            target = line.split()[4].replace("\\040", " ")
            if target.startswith(prefix) or target == prefix.rstrip("/"):
                found.append(target)
    return sorted(found, key=len, reverse=True)


def _unmount(target: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    mnt_detach = 2
    if libc.umount2(target.encode(), mnt_detach) != 0:
        log.warning("unmount failed", extra={"target": target, "errno": ctypes.get_errno()})


def our_pod_uids(state_dir: Path, bridge: str) -> set[str]:
    """Pods of this node: on disk, in the IP allocations, or wired to our bridge.

    Namespaces of another node agent (another state dir and bridge) are left alone.
    """
    uids = {p.name for p in (state_dir / "pods").glob("*") if p.is_dir()}
    uids |= set(IpamStore(state_dir / "ipam.json", POD_CIDR, GATEWAY_IP).load().values())
    ports = set(network.bridge_ports(bridge))
    for namespace in network.our_namespaces():
        uid = namespace.removeprefix(network.NETNS_PREFIX)
        if network.names_for(uid)[1] in ports:
            uids.add(uid)
    return uids


def cleanup(state_dir: Path, bridge: str) -> None:
    state_dir = state_dir.resolve()
    pods_dir = state_dir / "pods"
    uids = our_pod_uids(state_dir, bridge)
    memory_roots = cgroups.node_roots(bridge)
    if pods_dir.exists():
        for pod_dir in pods_dir.iterdir():
            remove_pod_leftovers(pod_dir, memory_roots)
    # Monitors whose state files were lost still name their spec under the state dir.
    spec_prefix = str(state_dir) + "/"
    monitors = procscan.pids_with_cmdline(
        lambda argv: str(SHIM) in argv and any(a.startswith(spec_prefix) for a in argv)
    )
    namespaces = [network.names_for(uid)[0] for uid in uids]
    inodes = {i for i in (network.netns_inode(n) for n in namespaces) if i is not None}
    stray = monitors + procscan.pids_in_netns(inodes)
    stray = [pid for pid in stray if pid != os.getpid()]
    procscan.kill_all(stray)
    left = procscan.wait_gone(stray, 5.0)
    if left:
        log.warning("processes survived SIGKILL", extra={"pids": left})
    left_cgroups = cgroups.remove_node(bridge)  # kills what is still inside them
    if left_cgroups:
        log.warning("cgroups not removed", extra={"cgroups": [str(c) for c in left_cgroups]})
    for uid in uids:
        network.teardown_pod_network(uid)
    for port in network.bridge_ports(bridge):
        network.delete_link(port)
    network.delete_link(bridge)
    if state_dir.exists():
        for target in _mounts_under(state_dir):
            _unmount(target)
    shutil.rmtree(pods_dir, ignore_errors=True)
    (state_dir / "ipam.json").unlink(missing_ok=True)
    log.info("node cleaned up", extra={"stateDir": str(state_dir), "bridge": bridge})
