"""`kiln dev` itself: only meaningful for the local cluster (see conftest collect_ignore)."""

from __future__ import annotations

import time

import pytest
from kubernetes import client
from tests.e2e.conftest import Kube

from kiln.devcluster.cluster import Cluster

pytestmark = pytest.mark.e2e


def test_up_again_is_a_no_op_and_the_node_is_ready(kube: Kube) -> None:
    start = time.monotonic()
    Cluster().up()
    assert time.monotonic() - start < 10
    node = kube.core.read_node("kiln-node")
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    coordination = client.CoordinationV1Api(kube.api)
    first = coordination.read_namespaced_lease("kiln-node", "kube-node-lease").spec.renew_time
    time.sleep(12)
    second = coordination.read_namespaced_lease("kiln-node", "kube-node-lease").spec.renew_time
    assert second > first, "the node agent stopped renewing its heartbeat Lease"
