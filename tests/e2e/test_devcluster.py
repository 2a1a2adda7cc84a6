"""`kiln dev` itself: only meaningful for the local cluster (see conftest collect_ignore)."""

from __future__ import annotations

import time

import pytest
import urllib3
from kubernetes import client
from tests.e2e.conftest import Kube
from tests.support.k8s import pod_manifest, python_container, wait_for

from kilndev.cluster import Cluster

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
    assert second > first, "the kubelet stopped renewing its heartbeat Lease"


def _running(kube: Kube, namespace: str, name: str) -> client.V1Pod | None:
    try:
        pod = kube.core.read_namespaced_pod(name, namespace)
    except (client.ApiException, urllib3.exceptions.HTTPError):  # the apiserver is coming back
        return None
    return pod if pod.status.phase == "Running" else None


def test_pods_start_again_after_the_apiserver_restarts(kube: Kube, namespace: str) -> None:
    """The kubelets, kube-proxy and the controllers all reconnect: a pod created after the
    apiserver came back runs, and one that ran before it went away keeps running."""
    cluster = Cluster()
    before = pod_manifest("before", [python_container("main", "import time; time.sleep(600)")])
    kube.core.create_namespaced_pod(namespace, before)
    wait_for(lambda: _running(kube, namespace, "before"), 90, "pod `before` Running")
    recoveries = []
    for attempt in range(2):
        assert cluster.stop_component("kube-apiserver")
        time.sleep(3)
        cluster.start_component("kube-apiserver")
        back = time.monotonic()
        name = f"after-{attempt}"
        after = pod_manifest(name, [python_container("main", "import time; time.sleep(600)")])
        wait_for(
            lambda m=after: _create(kube, namespace, m), 60, f"pod {name} accepted", interval=0.5
        )
        wait_for(lambda n=name: _running(kube, namespace, n), 120, f"pod {name} Running")
        recoveries.append(time.monotonic() - back)
    assert _running(kube, namespace, "before"), "a pod did not survive the apiserver restart"
    print(f"apiserver back -> new pod Running: {', '.join(f'{r:.1f} s' for r in recoveries)}")


def _create(kube: Kube, namespace: str, manifest: dict) -> bool:
    try:
        kube.core.create_namespaced_pod(namespace, manifest)
    except client.ApiException as e:
        return e.status == 409  # created by an earlier attempt whose answer was lost
    except urllib3.exceptions.HTTPError:
        return False
    return True
