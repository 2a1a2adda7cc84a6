"""What a real node gives every pod: DNS names, exec, port-forward, CPU limits, spreading.

Each test is a behaviour users rely on from any Kubernetes node, checked through the API
and kubectl exactly as a user would; none of it is specific to the local cluster.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator

import pytest
from kubernetes import client
from tests.e2e.conftest import Kube
from tests.e2e.test_cluster import HELLO_SERVER
from tests.support.k8s import (
    pod_manifest,
    python_container,
    termination_message,
    wait_for,
    wait_pod_done,
)

pytestmark = pytest.mark.e2e


def _running_pod(kube: Kube, namespace: str, name: str, **spec: object) -> client.V1Pod:
    container = python_container(
        "main",
        HELLO_SERVER,
        ports=[8080],
        env=[{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        readinessProbe={"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    )
    kube.core.create_namespaced_pod(
        namespace, pod_manifest(name, [container], labels={"app": name}, **spec)
    )

    def ready() -> client.V1Pod | None:
        pod = kube.core.read_namespaced_pod(name, namespace)
        conditions = pod.status.conditions or []
        return pod if any(c.type == "Ready" and c.status == "True" for c in conditions) else None

    return wait_for(ready, 120, f"pod {name} Ready")


def test_a_pod_resolves_services_by_their_dns_names(kube: Kube, namespace: str) -> None:
    _running_pod(kube, namespace, "named")
    service = kube.core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "named"},
            "spec": {"selector": {"app": "named"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    lookup = textwrap.dedent(
        """
        import json, socket, sys, time, urllib.request
        names = sys.argv[1:]
        out = {}
        for name in names:
            out[name] = socket.gethostbyname(name)
        # ... and the name answers: kube-proxy serves the ClusterIP it resolved to.
        deadline, url = time.monotonic() + 30, f"http://{names[0]}/"
        while True:
            try:
                out["body"] = urllib.request.urlopen(url, timeout=5).read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        open("/dev/termination-log", "w").write(json.dumps(out))
        """
    )
    names = [
        "named",  # the pod's own namespace, through the search path
        f"named.{namespace}",
        f"named.{namespace}.svc",
        f"named.{namespace}.svc.cluster.local",
        "kubernetes.default.svc",
    ]
    kube.core.create_namespaced_pod(
        namespace, pod_manifest("resolver", [python_container("main", lookup, args=names)])
    )
    done = wait_pod_done(kube.core, namespace, "resolver", timeout=90)
    assert done.status.phase == "Succeeded", kube.kubectl("logs", "-n", namespace, "resolver")
    seen = json.loads(termination_message(done))
    kubernetes_ip = kube.core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    assert {seen[n] for n in names[:4]} == {service.spec.cluster_ip}
    assert seen["kubernetes.default.svc"] == kubernetes_ip
    assert seen["body"] == "named"


def test_a_cpu_limited_pod_is_throttled(kube: Kube, namespace: str) -> None:
    # A busy loop under a 100m limit gets about a tenth of a CPU: its own CPU time over
    # 3 s of wall time stays far below what one free core gives, and the kernel counts the
    # throttled periods in the container's cgroup.
    burn = textwrap.dedent(
        """
        import json, os, time
        start_wall, start_cpu = time.monotonic(), time.process_time()
        while time.monotonic() - start_wall < 3:
            pass
        share = (time.process_time() - start_cpu) / (time.monotonic() - start_wall)
        stat = {}
        for path in ("/sys/fs/cgroup/cpu.stat", "/sys/fs/cgroup/cpu/cpu.stat",
                     "/sys/fs/cgroup/cpu,cpuacct/cpu.stat"):
            if os.path.exists(path):
                stat = dict(line.split() for line in open(path))
                break
        open("/dev/termination-log", "w").write(
            json.dumps({"share": share, "nr_throttled": int(stat.get("nr_throttled", -1))})
        )
        """
    )
    limited = python_container(
        "main", burn, resources={"limits": {"cpu": "100m", "memory": "128Mi"}}
    )
    kube.core.create_namespaced_pod(namespace, pod_manifest("throttled", [limited]))
    done = wait_pod_done(kube.core, namespace, "throttled", timeout=90)
    assert done.status.phase == "Succeeded", termination_message(done)
    seen = json.loads(termination_message(done))
    assert seen["share"] < 0.3, seen  # one free core would give close to 1.0
    assert seen["nr_throttled"] > 0, seen


def test_kubectl_exec_runs_a_command_in_the_container(kube: Kube, namespace: str) -> None:
    _running_pod(kube, namespace, "shell")
    done = kube.kubectl(
        "exec", "-n", namespace, "shell", "--", "python3", "-c",
        "import os, socket; print(os.getuid(), socket.gethostname())",
    )  # fmt: skip
    assert done.stdout.split() == ["1000", "shell"]
    # The container has its own PID namespace: PID 1 is its own entry point (the server
    # script), not the host's init, and the host's processes are not visible.
    ps = kube.kubectl(
        "exec", "-n", namespace, "shell", "--", "python3", "-c",
        "import os; print(open('/proc/1/cmdline').read().split(chr(0))[:2]);"
        "print(len([p for p in os.listdir('/proc') if p.isdigit()]))",
    )  # fmt: skip
    first, count = ps.stdout.splitlines()
    assert first == "['python3', '-u']", ps.stdout
    assert int(count) < 10, ps.stdout


@pytest.fixture
def port_forward(kube: Kube) -> Iterator[object]:
    started: list[subprocess.Popen[str]] = []

    def forward(namespace: str, target: str, port: int) -> int:
        process = subprocess.Popen(
            [kube.kubectl_bin, f"--kubeconfig={kube.kubeconfig}", "port-forward", "-n",
             namespace, target, f":{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()  # "Forwarding from 127.0.0.1:NNNNN -> 8080"
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, line
        return int(match.group(1))

    yield forward
    for process in started:
        process.terminate()
        process.wait(timeout=10)


def test_kubectl_port_forward_reaches_the_pod(
    kube: Kube, namespace: str, port_forward: object
) -> None:
    _running_pod(kube, namespace, "forwarded")
    local = port_forward(namespace, "pod/forwarded", 8080)  # type: ignore[operator]
    body = urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10).read().decode()
    assert body == "forwarded"


def _ready_nodes(kube: Kube) -> list[str]:
    nodes = kube.core.list_node().items
    return sorted(
        n.metadata.name
        for n in nodes
        if not n.spec.unschedulable
        and any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
    )


def test_pods_start_on_every_node(kube: Kube, namespace: str) -> None:
    nodes = _ready_nodes(kube)
    if len(nodes) < 2:
        pytest.skip(f"needs two schedulable nodes; this cluster has {nodes}")
    for node in nodes:
        pod = pod_manifest(
            f"on-{node}",
            [python_container("main", "import socket; print(socket.gethostname())")],
            nodeName=node,
        )
        kube.core.create_namespaced_pod(namespace, pod)
    for node in nodes:
        done = wait_pod_done(kube.core, namespace, f"on-{node}", timeout=90)
        assert done.status.phase == "Succeeded" and done.spec.node_name == node
        assert done.status.pod_ip, done.status


def test_an_image_that_does_not_exist_fails_to_pull_as_on_any_cluster(
    kube: Kube, namespace: str
) -> None:
    missing = python_container("main", "pass", image="kiln/no-such-image:0.0.0")
    kube.core.create_namespaced_pod(namespace, pod_manifest("unpullable", [missing]))

    def pull_failure() -> str | None:
        pod = kube.core.read_namespaced_pod("unpullable", namespace)
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting
            if waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff"):
                return f"{waiting.reason}: {waiting.message}"
        return None

    reason = wait_for(pull_failure, 90, "the pod to report ErrImagePull", interval=0.5)
    assert "no-such-image" in reason, reason
    events = kube.core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=unpullable"
    ).items
    assert any(e.reason == "Failed" and "pull" in (e.message or "").lower() for e in events)
