"""Pod networking on the host: the bridge, one network namespace and veth per pod.

Each step is one `ip -batch` call (a single process for all its commands), idempotent so
that a restarted agent can repeat it. Names derive from the pod UID: the namespace is
`kiln-<uid>` in /run/netns, the host end of the veth `kv<first 12 hex of uid>`.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/run/netns")
NETNS_PREFIX = "kiln-"


class NetworkError(RuntimeError):
    pass


@dataclass(frozen=True)
class PodNetwork:
    netns: str
    host_veth: str
    ip: str

    @property
    def netns_path(self) -> str:
        return str(NETNS_DIR / self.netns)


def names_for(pod_uid: str) -> tuple[str, str]:
    compact = pod_uid.replace("-", "")
    return f"{NETNS_PREFIX}{pod_uid}", f"kv{compact[:12]}"


def _ip_batch(commands: list[str], netns: str | None = None, check: bool = True) -> str:
    argv = ["ip", "-force", "-batch", "-"]
    if netns:
        argv[1:1] = ["-n", netns]
    result = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' | '.join(commands)}: {result.stderr.strip()}")
    return result.stdout


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _write_sysctl(name: str, value: str) -> None:
    path = Path("/proc/sys", name.replace(".", "/"))
    if path.exists() and path.read_text().strip() != value:
        path.write_text(value)


def ensure_bridge(bridge: str, gateway: ipaddress.IPv4Address, cidr: ipaddress.IPv4Network) -> None:
    """The bridge with the gateway address on it, forwarding on (what kube-proxy needs)."""
    if not _link_exists(bridge):
        _ip_batch([f"link add {bridge} type bridge"])
    addresses = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", bridge], capture_output=True, text=True
    ).stdout
    commands = [f"link set {bridge} up"]
    if f" {gateway}/" not in addresses:
        commands.insert(0, f"addr add {gateway}/{cidr.prefixlen} dev {bridge}")
    _ip_batch(commands)
    _write_sysctl("net.ipv4.ip_forward", "1")
    # Service traffic between pods on the same bridge must pass kube-proxy's iptables rules.
    _write_sysctl("net.bridge.bridge-nf-call-iptables", "1")


def setup_pod_network(
    pod_uid: str,
    ip: str,
    bridge: str,
    gateway: ipaddress.IPv4Address,
    cidr: ipaddress.IPv4Network,
) -> PodNetwork:
    netns, veth = names_for(pod_uid)
    network = PodNetwork(netns, veth, ip)
    host_side = []
    if not (NETNS_DIR / netns).exists():
        host_side.append(f"netns add {netns}")
    if not _link_exists(veth):
        host_side.append(f"link add {veth} type veth peer name eth0 netns {netns}")
    host_side += [
        f"link set {veth} master {bridge}",
        f"link set {veth} up",
        f"link set dev {veth} type bridge_slave hairpin on",
    ]
    _ip_batch(host_side)
    _ip_batch(
        [
            f"addr replace {ip}/{cidr.prefixlen} dev eth0",
            "link set lo up",
            "link set eth0 up",
            f"route replace default via {gateway} dev eth0",
        ],
        netns=netns,
    )
    return network


def teardown_pod_network(pod_uid: str) -> None:
    """Deleting the namespace destroys its veth pair too."""
    netns, veth = names_for(pod_uid)
    if _link_exists(veth):
        _ip_batch([f"link del {veth}"], check=False)
    if (NETNS_DIR / netns).exists():
        _ip_batch([f"netns del {netns}"], check=False)


def our_namespaces() -> list[str]:
    if not NETNS_DIR.exists():
        return []
    return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(NETNS_PREFIX))


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def bridge_ports(bridge: str) -> list[str]:
    brif = Path("/sys/class/net", bridge, "brif")
    return sorted(os.listdir(brif)) if brif.exists() else []


def delete_link(name: str) -> None:
    if _link_exists(name):
        _ip_batch([f"link del {name}"], check=False)
