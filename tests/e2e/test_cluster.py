"""What the cluster must do for Kiln to stand on it (issue: foundation).

Each test is a user-visible Kubernetes behaviour, checked through the real API.
"""

from __future__ import annotations

import json
import secrets
import shutil
import textwrap
import urllib.request
from pathlib import Path

import boto3
import pytest
from kubernetes import client
from tests.e2e.conftest import Kube
from tests.support.k8s import (
    pod_manifest,
    python_container,
    termination_message,
    wait_for,
    wait_pod_done,
)

from kiln.settings import DEFAULT_TRAINER_IMAGE

pytestmark = pytest.mark.e2e

HELLO_SERVER = textwrap.dedent(
    """
    import http.server, os
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = os.environ["POD_NAME"].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
    """
)

# A client pod: fetch each URL given in argv and print {url: body} as the termination message.
FETCHER = textwrap.dedent(
    """
    import json, sys, urllib.request
    out = {}
    for url in sys.argv[1:]:
        out[url] = urllib.request.urlopen(url, timeout=5).read().decode()
    open("/dev/termination-log", "w").write(json.dumps(out))
    """
)


# Fetch one URL N times over fresh connections and report the distinct answers.
SERVICE_FETCHER = textwrap.dedent(
    """
    import json, sys, time, urllib.request
    url, count = sys.argv[1], int(sys.argv[2])
    # kube-proxy programs a new Service a moment after its endpoints are ready (it first
    # rejects connections to a Service it knows without endpoints): wait for the first answer.
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    seen = sorted({urllib.request.urlopen(url, timeout=5).read().decode() for _ in range(count)})
    open("/dev/termination-log", "w").write(json.dumps(seen))
    """
)


def _service_endpoints(kube: Kube, namespace: str, service: str) -> int:
    slices = client.DiscoveryV1Api(kube.api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    )
    return sum(
        1
        for s in slices.items
        for e in s.endpoints or []
        if e.conditions is None or e.conditions.ready
    )


def _ready_pods(kube: Kube, namespace: str, selector: str) -> list[client.V1Pod]:
    pods = kube.core.list_namespaced_pod(namespace, label_selector=selector).items
    return [
        p
        for p in pods
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def _hello_deployment(replicas: int) -> dict:
    container = python_container(
        "hello",
        HELLO_SERVER,
        ports=[8080],
        env=[{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        readinessProbe={"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    )
    template = pod_manifest("unused", [container], restart_policy="Always", labels={"app": "hello"})
    del template["metadata"]["name"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hello"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "hello"}},
            "template": {"metadata": template["metadata"], "spec": template["spec"]},
        },
    }


def test_deployment_pods_get_distinct_ips_answer_and_are_replaced_and_collected(
    kube: Kube, namespace: str
) -> None:
    kube.apps.create_namespaced_deployment(namespace, _hello_deployment(2))
    pods = wait_for(
        lambda: (lambda p: p if len(p) == 2 else None)(_ready_pods(kube, namespace, "app=hello")),
        90,
        "2 Ready hello pods",
    )
    ips = {p.status.pod_ip for p in pods}
    assert len(ips) == 2, f"pods share an IP: {ips}"
    names = {p.metadata.name for p in pods}

    # Each pod answers on its own IP with its own name: from the host on the local cluster,
    # and from a client pod everywhere.
    urls = {f"http://{p.status.pod_ip}:8080/": p.metadata.name for p in pods}
    if kube.local:
        for url, name in urls.items():
            assert urllib.request.urlopen(url, timeout=5).read().decode() == name
    kube.core.create_namespaced_pod(
        namespace, pod_manifest("fetch", [python_container("fetch", FETCHER, args=list(urls))])
    )
    fetched = json.loads(termination_message(wait_pod_done(kube.core, namespace, "fetch")))
    assert fetched == urls

    # A Service's ClusterIP spreads new connections over both pods (kube-proxy), from a pod.
    service = kube.core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "hello"},
            "spec": {"selector": {"app": "hello"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    wait_for(lambda: _service_endpoints(kube, namespace, "hello") == 2, 30, "2 ready endpoints")
    cluster_ip = service.spec.cluster_ip
    kube.core.create_namespaced_pod(
        namespace,
        pod_manifest(
            "via-service",
            [python_container("fetch", SERVICE_FETCHER, args=[f"http://{cluster_ip}/", "30"])],
        ),
    )
    answers = json.loads(termination_message(wait_pod_done(kube.core, namespace, "via-service")))
    # 30 connections all landing on one pod would happen with probability 2 * 0.5**30.
    assert set(answers) == names

    # A deleted pod is replaced by a new one (the ReplicaSet controller + kubelet).
    victim = sorted(names)[0]
    kube.core.delete_namespaced_pod(victim, namespace)
    replaced = wait_for(
        lambda: (
            lambda p: p if len(p) == 2 and victim not in {x.metadata.name for x in p} else None
        )(_ready_pods(kube, namespace, "app=hello")),
        90,
        "a replacement pod",
    )
    assert len({p.status.pod_ip for p in replaced}) == 2

    # Deleting the owner garbage-collects the ReplicaSet and its pods.
    kube.apps.delete_namespaced_deployment("hello", namespace, propagation_policy="Background")
    wait_for(
        lambda: not kube.core.list_namespaced_pod(namespace, label_selector="app=hello").items,
        90,
        "the Deployment's pods to be garbage-collected",
    )


def test_never_pods_report_success_with_message_and_failure_with_exit_code(
    kube: Kube, namespace: str
) -> None:
    ok = python_container(
        "main", "open('/dev/termination-log','w').write('trained: accuracy=0.97')"
    )
    bad = python_container("main", "import sys; print('about to fail'); sys.exit(3)")
    kube.core.create_namespaced_pod(namespace, pod_manifest("ok", [ok]))
    kube.core.create_namespaced_pod(namespace, pod_manifest("bad", [bad]))

    done = wait_pod_done(kube.core, namespace, "ok")
    assert done.status.phase == "Succeeded"
    terminated = done.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0
    assert terminated.reason == "Completed"
    assert terminated.message == "trained: accuracy=0.97"

    failed = wait_pod_done(kube.core, namespace, "bad")
    assert failed.status.phase == "Failed"
    terminated = failed.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3
    assert terminated.reason == "Error"


def test_memory_limit_is_enforced_and_an_oom_kill_is_reported(kube: Kube, namespace: str) -> None:
    limits = {"limits": {"memory": "64Mi"}}
    # ~300 MB, every page written: far beyond the limit, far below this machine's memory.
    hog = python_container(
        "main", "data = b'x' * (300 << 20); print('allocated', len(data))", resources=limits
    )
    fits = python_container(
        "main",
        "data = b'x' * (16 << 20); open('/dev/termination-log', 'w').write(str(len(data)))",
        resources=limits,
    )
    kube.core.create_namespaced_pod(namespace, pod_manifest("hog", [hog]))
    kube.core.create_namespaced_pod(namespace, pod_manifest("fits", [fits]))

    killed = wait_pod_done(kube.core, namespace, "hog", timeout=90)
    assert killed.status.phase == "Failed"
    terminated = killed.status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137), terminated
    assert "allocated" not in kube.kubectl("logs", "-n", namespace, "hog").stdout

    done = wait_pod_done(kube.core, namespace, "fits", timeout=90)
    assert done.status.phase == "Succeeded", done.status.container_statuses[0].state
    terminated = done.status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("Completed", 0)
    assert termination_message(done) == str(16 << 20)


def test_volumes_and_downward_api_reach_the_process(kube: Kube, namespace: str) -> None:
    kube.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"mode": "canary"}}
    )
    kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t"}}
    )
    claim = f"data-{namespace}"
    pv_path = f"/tmp/kiln-e2e-pv-{secrets.token_hex(4)}"
    if kube.local:
        # A kubelet creates a missing hostPath directory owned by root (fsGroup does not
        # apply to hostPath): prepare it writable, as a local-volume provisioner would.
        Path(pv_path).mkdir(mode=0o777)
        Path(pv_path).chmod(0o777)
    kube.core.create_persistent_volume(
        {
            "metadata": {"name": claim},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "kiln-local",
                "hostPath": {"path": pv_path, "type": "DirectoryOrCreate"},
                "claimRef": {"namespace": namespace, "name": "data"},
            },
        }
    )
    kube.core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "kiln-local",
                "volumeName": claim,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    script = textwrap.dedent(
        """
        import json, os
        open("/scratch/x", "w").write("scratch-ok")
        open("/data/written-by-pod", "w").write("pvc-ok")
        out = {
            "configmap": open("/etc/settings/mode").read(),
            "secret": open("/etc/creds/token").read(),
            "emptydir": open("/scratch/x").read(),
            "pvc": open("/data/written-by-pod").read(),
            "pod_name": os.environ["POD_NAME"],
            "namespace": os.environ["POD_NAMESPACE"],
            "pod_ip": os.environ["POD_IP"],
            "mode_env": os.environ["MODE"],
            "uid": os.getuid(),
        }
        open("/dev/termination-log", "w").write(json.dumps(out))
        """
    )

    def field(path: str) -> dict:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    container = python_container(
        "main",
        script,
        env=[
            {"name": "POD_NAME", **field("metadata.name")},
            {"name": "POD_NAMESPACE", **field("metadata.namespace")},
            {"name": "POD_IP", **field("status.podIP")},
            {
                "name": "MODE",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}},
            },
        ],
        volumeMounts=[
            {"name": "settings", "mountPath": "/etc/settings"},
            {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "data", "mountPath": "/data"},
        ],
    )
    pod = pod_manifest(
        "volumes",
        [container],
        volumes=[
            {"name": "settings", "configMap": {"name": "settings"}},
            {"name": "creds", "secret": {"secretName": "creds"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        ],
    )
    pod["spec"]["securityContext"]["fsGroup"] = 1000
    kube.core.create_namespaced_pod(namespace, pod)
    try:
        done = wait_pod_done(kube.core, namespace, "volumes", timeout=90)
        assert done.status.phase == "Succeeded", termination_message(done)
        seen = json.loads(termination_message(done))
        assert seen == {
            "configmap": "canary",
            "secret": "s3cr3t",
            "emptydir": "scratch-ok",
            "pvc": "pvc-ok",
            "pod_name": "volumes",
            "namespace": namespace,
            "pod_ip": done.status.pod_ip,
            "mode_env": "canary",
            "uid": 1000,
        }
        if kube.local:  # the hostPath is on this machine: the pod's write is there
            assert Path(pv_path, "written-by-pod").read_text() == "pvc-ok"
    finally:
        kube.core.delete_persistent_volume(claim)
        if kube.local:
            shutil.rmtree(pv_path, ignore_errors=True)


def test_rbac_pod_security_and_projected_token(kube: Kube, namespace: str) -> None:
    # A privileged pod is refused in a namespace that enforces `restricted`.
    privileged = pod_manifest("root", [python_container("main", "pass")])
    privileged["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    with pytest.raises(client.ApiException) as refused:
        kube.core.create_namespaced_pod(namespace, privileged)
    assert refused.value.status == 403
    assert "violates PodSecurity" in refused.value.body

    # A ServiceAccount allowed to list pods (and nothing else) uses its projected token.
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    kube.rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        },
    )
    kube.rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    api_call = textwrap.dedent(
        """
        import json, os, ssl, urllib.error, urllib.request
        sa = "/var/run/secrets/kubernetes.io/serviceaccount"
        token = open(f"{sa}/token").read()
        ns = open(f"{sa}/namespace").read()
        ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ["KUBERNETES_SERVICE_PORT"]
        out = {}
        for what in ("pods", "secrets"):
            req = urllib.request.Request(
                f"https://{host}:{port}/api/v1/namespaces/{ns}/{what}",
                headers={"Authorization": f"Bearer {token}"},
            )
            try:
                out[what] = urllib.request.urlopen(req, context=ctx, timeout=10).status
            except urllib.error.HTTPError as e:
                out[what] = e.code
        open("/dev/termination-log", "w").write(json.dumps(out))
        """
    )
    for sa in ("reader", "nobody"):
        kube.core.create_namespaced_pod(
            namespace,
            pod_manifest(sa, [python_container("main", api_call)], serviceAccountName=sa),
        )
    reader = json.loads(termination_message(wait_pod_done(kube.core, namespace, "reader")))
    nobody = json.loads(termination_message(wait_pod_done(kube.core, namespace, "nobody")))
    assert reader == {"pods": 200, "secrets": 403}
    assert nobody == {"pods": 403, "secrets": 403}


def test_prometheus_scrapes_a_pod(kube: Kube, namespace: str) -> None:
    marker = secrets.token_hex(4)
    exporter = textwrap.dedent(
        f"""
        import http.server
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b'kiln_e2e_probe_total{{marker="{marker}"}} 42\\n'
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *a):
                pass
        http.server.HTTPServer(("", 9100), H).serve_forever()
        """
    )
    pod = pod_manifest("exporter", [python_container("main", exporter, ports=[9100])])
    pod["metadata"]["annotations"] = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9100",
        "prometheus.io/path": "/metrics",
    }
    kube.core.create_namespaced_pod(namespace, pod)
    query = f'kiln_e2e_probe_total{{marker="{marker}",namespace="{namespace}",pod="exporter"}}'

    def scraped() -> float | None:
        url = f"{kube.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        result = json.load(urllib.request.urlopen(url, timeout=5))["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    assert wait_for(scraped, 90, f"Prometheus to return {query}", interval=1) == 42.0


def test_pod_writes_and_reads_s3(kube: Kube, namespace: str) -> None:
    bucket = f"e2e-{secrets.token_hex(4)}"
    s3 = boto3.client(
        "s3",
        endpoint_url=kube.s3_endpoint,
        aws_access_key_id=kube.s3_access_key,
        aws_secret_access_key=kube.s3_secret_key,
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=bucket)
    kube.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "s3"},
            "stringData": {
                "AWS_ACCESS_KEY_ID": kube.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": kube.s3_secret_key,
            },
        },
    )
    script = textwrap.dedent(
        f"""
        import boto3, os
        s3 = boto3.client("s3", region_name="us-east-1")
        me = os.environ["POD_NAME"].encode()
        s3.put_object(Bucket="{bucket}", Key="hello.txt", Body=b"from " + me)
        body = s3.get_object(Bucket="{bucket}", Key="hello.txt")["Body"].read()
        open("/dev/termination-log", "wb").write(body)
        """
    )
    # Kiln's trainer image: python:3.11-slim has no boto3.
    container = python_container(
        "main",
        script,
        image=DEFAULT_TRAINER_IMAGE,
        env=[
            {"name": "AWS_ENDPOINT_URL", "value": kube.s3_endpoint},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        envFrom=[{"secretRef": {"name": "s3"}}],
    )
    kube.core.create_namespaced_pod(namespace, pod_manifest("s3", [container]))
    done = wait_pod_done(kube.core, namespace, "s3", timeout=90)
    assert done.status.phase == "Succeeded", termination_message(done)
    assert termination_message(done) == "from s3"
    assert s3.get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == b"from s3"


def test_kubectl_logs_shows_pod_output(kube: Kube, namespace: str) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        for i in range(3):
            print(f"line {i}", flush=True)
        # Two pipes, read apart: without the pause the stderr line may be logged first.
        time.sleep(0.5)
        print("to stderr", file=sys.stderr, flush=True)
        """
    )
    kube.core.create_namespaced_pod(
        namespace, pod_manifest("talker", [python_container("main", script)])
    )
    wait_pod_done(kube.core, namespace, "talker")
    logs = kube.kubectl("logs", "-n", namespace, "talker").stdout
    assert logs.splitlines() == ["line 0", "line 1", "line 2", "to stderr"]
    tail = kube.kubectl("logs", "-n", namespace, "talker", "--tail=1").stdout
    assert tail.splitlines() == ["to stderr"]
