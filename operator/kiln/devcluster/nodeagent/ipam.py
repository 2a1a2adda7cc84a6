"""Pod IP allocation from the node's pod CIDR.

The choice is a pure function over the current assignments; `IpamStore` persists them in
the state dir (written atomically) so that an agent restart never hands out an address a
running pod still holds.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class PoolExhausted(Exception):
    pass


def allocate(
    cidr: Network,
    gateway: Address,
    assigned: Mapping[str, str],
    owner: str,
) -> str:
    """The address `owner` holds already, else the lowest free host address.

    `assigned` maps address -> owner. The network, broadcast and gateway addresses are
    never handed out.
    """
    for address, holder in assigned.items():
        if holder == owner:
            return address
    for host in cidr.hosts():
        if host != gateway and str(host) not in assigned:
            return str(host)
    raise PoolExhausted(f"no free address left in {cidr}")


def release(assigned: Mapping[str, str], owner: str) -> dict[str, str]:
    return {address: holder for address, holder in assigned.items() if holder != owner}


class IpamStore:
    """Assignments (address -> pod uid) in one JSON file."""

    def __init__(self, path: Path, cidr: Network, gateway: Address):
        self.path = path
        self.cidr = cidr
        self.gateway = gateway

    def load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def _save(self, assigned: Mapping[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(sorted(assigned.items())), indent=1))
        os.replace(tmp, self.path)

    def acquire(self, owner: str) -> str:
        assigned = self.load()
        address = allocate(self.cidr, self.gateway, assigned, owner)
        if assigned.get(address) != owner:
            self._save({**assigned, address: owner})
        return address

    def release(self, owner: str) -> None:
        assigned = self.load()
        remaining = release(assigned, owner)
        if remaining != assigned:
            self._save(remaining)
