import ipaddress
from pathlib import Path

import pytest

from kiln.devcluster.nodeagent.ipam import IpamStore, PoolExhausted, allocate, release

pytestmark = pytest.mark.unit

CIDR = ipaddress.IPv4Network("10.244.0.0/29")
GATEWAY = ipaddress.IPv4Address("10.244.0.1")


def test_first_pod_gets_first_address_after_gateway() -> None:
    assert allocate(CIDR, GATEWAY, {}, "pod-a") == "10.244.0.2"


def test_addresses_in_use_are_skipped() -> None:
    assert allocate(CIDR, GATEWAY, {"10.244.0.2": "pod-a"}, "pod-b") == "10.244.0.3"


def test_owner_keeps_its_address() -> None:
    assigned = {"10.244.0.2": "pod-a", "10.244.0.3": "pod-b"}
    assert allocate(CIDR, GATEWAY, assigned, "pod-b") == "10.244.0.3"


def test_exhausted_pool_raises() -> None:
    assigned = {f"10.244.0.{i}": f"pod-{i}" for i in range(2, 7)}
    with pytest.raises(PoolExhausted):
        allocate(CIDR, GATEWAY, assigned, "pod-new")


def test_release_frees_only_the_owner() -> None:
    assert release({"10.244.0.2": "a", "10.244.0.3": "b"}, "a") == {"10.244.0.3": "b"}


def test_store_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ipam.json"
    first = IpamStore(path, CIDR, GATEWAY)
    a = first.acquire("pod-a")
    restarted = IpamStore(path, CIDR, GATEWAY)
    assert restarted.acquire("pod-b") != a
    assert restarted.acquire("pod-a") == a
    restarted.release("pod-a")
    assert IpamStore(path, CIDR, GATEWAY).acquire("pod-c") == a
