"""Host-side networking of the dev cluster: the pod bridge and the fences around it.

Fences, so that no cluster address ever leaves this machine:
- the service CIDR is routed onto the bridge: a ClusterIP that kube-proxy does not
  translate goes nowhere (no blackhole route: it would fail the connect() of host
  processes before kube-proxy's DNAT could rewrite the packet);
- packets from pods may only be forwarded back onto the bridge.
"""

from __future__ import annotations

import subprocess

from kiln.devcluster import config

COMMENT = "kiln-dev: pods stay on this host"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


def _forward_rule() -> list[str]:
    return [
        "FORWARD",
        "-s",
        str(config.POD_CIDR),
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


def setup() -> None:
    """Idempotent: bridge with the gateway address, forwarding, route and fence."""
    if _run("ip", "link", "show", config.BRIDGE, check=False).returncode != 0:
        _run("ip", "link", "add", config.BRIDGE, "type", "bridge")
    gateway = f"{config.GATEWAY_IP}/{config.POD_CIDR.prefixlen}"
    if gateway not in _run("ip", "-4", "addr", "show", "dev", config.BRIDGE).stdout:
        _run("ip", "addr", "add", gateway, "dev", config.BRIDGE)
    _run("ip", "link", "set", config.BRIDGE, "up")
    _run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    _run("ip", "route", "replace", str(config.SERVICE_CIDR), "dev", config.BRIDGE)
    if _run("iptables", "-C", *_forward_rule(), check=False).returncode != 0:
        _run("iptables", "-I", *_forward_rule())


def teardown() -> None:
    """Remove everything setup() added; safe to call when nothing is there."""
    while _run("iptables", "-D", *_forward_rule(), check=False).returncode == 0:
        pass
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
    return found
