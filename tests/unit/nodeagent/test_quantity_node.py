from decimal import Decimal

import pytest

from kiln.devcluster.nodeagent.node import memory_kib, node_status
from kiln.devcluster.nodeagent.quantity import ceil_ratio, parse_quantity

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("250m", Decimal("0.25")),
        ("1Ki", 1024),
        ("2Gi", 2 * 2**30),
        ("1e3", 1000),
        ("1M", 10**6),
    ],
)
def test_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_invalid_quantity() -> None:
    with pytest.raises(ValueError):
        parse_quantity("lots")


def test_ceil_ratio_rounds_up() -> None:
    assert ceil_ratio(Decimal("0.25"), Decimal(1)) == 1
    assert ceil_ratio(Decimal(2**30), Decimal(2**20)) == 1024


def test_node_status_reports_ready_with_kubelet_fields() -> None:
    resources = {"cpu": "2", "memory": "1000Ki", "pods": "110"}
    status = node_status("10.244.0.1", 10250, resources, "2026-01-01T00:00:00Z", {})
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert status["capacity"] == status["allocatable"] == resources
    assert {"type": "InternalIP", "address": "10.244.0.1"} in status["addresses"]
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert status["nodeInfo"]["kubeletVersion"] == "v1.37.2"


def test_node_condition_transition_time_is_kept() -> None:
    first = node_status("ip", 1, {}, "T0", {})
    later = node_status("ip", 1, {}, "T1", first)
    ready = next(c for c in later["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "T0" and ready["lastHeartbeatTime"] == "T1"


def test_memory_from_meminfo() -> None:
    assert memory_kib("MemTotal:       24684092 kB\nMemFree: 1 kB\n") == 24684092
