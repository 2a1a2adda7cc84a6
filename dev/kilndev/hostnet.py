"""Host-side networking of the dev cluster: the pod bridge and the fences around it.

Fences, so that no cluster address ever leaves this machine:
- the service CIDR is routed onto the bridge: a ClusterIP that kube-proxy does not
  translate goes nowhere (no blackhole route: it would fail the connect() of host
  processes before kube-proxy's DNAT could rewrite the packet);
- packets from pods may only be forwarded back onto the bridge.

The bridge carries the gateway address (also the first node's IP) with the whole pod
network's prefix, plus one /32 per further node; each node's CNI configuration hands out
addresses from its own /24 on the same bridge (see nodes.py).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address

from kilndev import config

COMMENT = "kiln-dev: pods stay on this host"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


def _forward_rule() -> list[str]:
    return [
        "FORWARD",
        "-s",
        str(config.POD_NETWORK),
        "!",
        "-o",
        config.BRIDGE,
        "-m",
        "comment",
        "--comment",
        COMMENT,
        "-j",
        "DROP",
    ]


def setup(node_ips: Sequence[IPv4Address] = ()) -> None:
    """Idempotent: bridge with the gateway and node addresses, forwarding, route and fence."""
    if _run("ip", "link", "show", config.BRIDGE, check=False).returncode != 0:
        _run("ip", "link", "add", config.BRIDGE, "type", "bridge")
    addresses = [f"{config.GATEWAY_IP}/{config.POD_NETWORK.prefixlen}"]
    addresses += [f"{ip}/32" for ip in node_ips if ip != config.GATEWAY_IP]
    present = _run("ip", "-4", "addr", "show", "dev", config.BRIDGE).stdout
    for address in addresses:
        if f"inet {address} " not in present:
            _run("ip", "addr", "add", address, "dev", config.BRIDGE)
    _run("ip", "link", "set", config.BRIDGE, "up")
    _run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    _run("ip", "route", "replace", str(config.SERVICE_CIDR), "dev", config.BRIDGE)
    if _run("iptables", "-C", *_forward_rule(), check=False).returncode != 0:
        _run("iptables", "-I", *_forward_rule())


# The chains the cluster's programs leave in the host's tables: the CNI portmap plugin's
# (CNI-HOSTPORT-*, CNI-DN-*), and the kubelet's and kube-proxy's (KUBE-FIREWALL,
# KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT, KUBE-SERVICES…; `kube-proxy --cleanup` removes
# only its own, the kubelet removes none).
# The kubelet makes its canaries in the IPv6 tables too.
_CHAINS = tuple(
    (tool, table, prefix)
    for tool in ("iptables", "ip6tables")
    for table, prefix in (
        ("nat", "CNI-"),
        ("nat", "KUBE-"),
        ("filter", "KUBE-"),
        ("mangle", "KUBE-"),
    )
    if tool == "iptables" or prefix == "KUBE-"
)


def _listing(tool: str, table: str) -> list[str]:
    try:
        return _run(tool, "-t", table, "-S", check=False).stdout.splitlines()
    except FileNotFoundError:  # no ip6tables on this host
        return []


def _chains(tool: str, table: str, prefix: str) -> list[str]:
    return [line.split()[1] for line in _listing(tool, table) if line.startswith(f"-N {prefix}")]


def _remove_chains(tool: str, table: str, prefix: str) -> None:
    chains = _chains(tool, table, prefix)
    if not chains:
        return
    # Jumps into them from the built-in chains first, then the chains themselves.
    for line in _listing(tool, table):
        words = line.split()
        jumps_in = "-j" in words and words[words.index("-j") + 1] in chains
        if words[:1] == ["-A"] and words[1] not in chains and jumps_in:
            _run(tool, "-t", table, "-D", *words[1:], check=False)
    for chain in chains:
        _run(tool, "-t", table, "-F", chain, check=False)
    for chain in chains:
        _run(tool, "-t", table, "-X", chain, check=False)


def teardown() -> None:
    """Remove everything setup() and the nodes' CNI added; safe when nothing is there."""
    while _run("iptables", "-D", *_forward_rule(), check=False).returncode == 0:
        pass
    for tool, table, prefix in _CHAINS:
        _remove_chains(tool, table, prefix)
    _run("ip", "route", "del", str(config.SERVICE_CIDR), check=False)
    _run("ip", "link", "del", config.BRIDGE, check=False)


def leftovers() -> list[str]:
    """What of ours is still on the host (used by `kiln dev status` and the tests)."""
    found = []
    if _run("ip", "link", "show", config.BRIDGE, check=False).returncode == 0:
        found.append(f"bridge {config.BRIDGE}")
    netns = _run("ip", "netns", "list", check=False).stdout.split()
    found += [f"netns {n}" for n in netns if n.startswith("kiln-")]
    if _run("iptables", "-C", *_forward_rule(), check=False).returncode == 0:
        found.append("iptables FORWARD fence")
    for tool, table, prefix in _CHAINS:
        found += [f"{tool} {table} chain {chain}" for chain in _chains(tool, table, prefix)]
    return found
