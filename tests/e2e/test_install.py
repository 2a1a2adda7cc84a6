"""Installing Kiln as users do, on a real apiserver:

- every kustomization (base, overlays, monitoring) and the GitOps examples pass
  `kubectl apply --dry-run=server`, i.e. the apiserver's own schema validation, with the
  Prometheus Operator and Gateway API CRDs from tests/data/crds/;
- the operator's ServiceAccount, bound as base/ and overlays/namespaced bind it, can do
  exactly what the operator needs and not what it must not (`kubectl auth can-i --as`);
- the namespaced overlay runs the operator as a pod under that ServiceAccount: it becomes
  Ready, joins kopf peering, serves /metrics and reconciles a TrainingJob; and the whole
  iris story (train -> Approved -> served -> canary -> Promoted) passes with it, after which
  Argo CD's Lua health checks and kstatus judge the real objects Healthy / Current.

Cluster-scoped objects this module creates (CRDs that were missing, a uniquely named
ClusterRole/Binding) are deleted afterwards; everything else lives in test namespaces.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from tests.e2e.conftest import Kube
from tests.e2e.test_canary import load
from tests.support.health import argocd_health, kstatus
from tests.support.k8s import wait_for
from tests.support.manifests import KUSTOMIZATIONS, ROOT, find, kustomize

pytestmark = pytest.mark.e2e

THIRD_PARTY_CRDS = sorted((ROOT / "tests/data/crds").glob("*.yaml"))
KOPF_CRDS = ROOT / "manifests/crds/kopf-peering-crds.yaml"


def kubectl_input(kube: Kube, objects: list[dict[str, Any]], *args: str) -> str:
    answer = subprocess.run(
        [kube.kubectl_bin, f"--kubeconfig={kube.kubeconfig}", *args, "-f", "-"],
        input=yaml.safe_dump_all(objects),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert answer.returncode == 0, answer.stderr + answer.stdout
    return answer.stdout


def crd_names(path: Path) -> list[str]:
    return [d["metadata"]["name"] for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def crds(kube: Kube) -> Iterator[None]:
    """Third-party and kopf CRDs present; the ones this module had to create go after."""
    created: list[str] = []
    for path in [*THIRD_PARTY_CRDS, KOPF_CRDS]:
        for name in crd_names(path):
            if kube.kubectl("get", "crd", name, check=False).returncode != 0:
                created.append(name)
        kube.kubectl("apply", "--server-side", "-f", str(path))
    # Kiln's own CRDs, so that any test of this module also runs alone; they stay (every
    # e2e module uses them, and deleting them would race the next module's apply).
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kiln_crds = [
        name for path in sorted((ROOT / "crds").glob("*.yaml")) for name in crd_names(path)
    ]
    for name in created + crd_names(KOPF_CRDS) + kiln_crds:
        kube.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    yield
    for name in created:
        kube.kubectl("delete", "crd", name, "--wait=false", check=False)


def in_namespace(objects: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """Move the namespaced objects into `namespace` (as `kustomize edit set namespace`
    would), keeping RBAC subjects and KILN_NAMESPACES consistent."""
    moved = []
    for obj in json.loads(json.dumps(objects)):
        if obj["kind"] == "Namespace":
            continue
        if obj["metadata"].get("namespace"):
            obj["metadata"]["namespace"] = namespace
        for subject in obj.get("subjects", []):
            subject["namespace"] = namespace
        if obj["kind"] == "Deployment":
            for env in obj["spec"]["template"]["spec"]["containers"][0]["env"]:
                if env["name"] == "KILN_NAMESPACES" and env.get("value"):
                    env["value"] = namespace
        moved.append(obj)
    return moved


def example_objects() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_manifests_validate_on_the_apiserver(
    kube: Kube, crds: None, namespace: str, path: str
) -> None:
    objects = kustomize(path)
    # Cluster-scoped definitions first (their kinds must be known for the rest), then the
    # namespaced objects, moved into the test namespace so nothing depends on kiln-system.
    definitions = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    if definitions:
        kubectl_input(kube, definitions, "apply", "--dry-run=server", "--server-side")
    rest = in_namespace([o for o in objects if o["kind"] != "CustomResourceDefinition"], namespace)
    if rest:
        out = kubectl_input(kube, rest, "apply", "--dry-run=server", "--server-side")
        assert out.count("serverside-applied (server dry run)") == len(rest), out
    assert definitions or rest


def test_kiln_examples_validate_on_the_apiserver(kube: Kube, crds: None, namespace: str) -> None:
    ours = [d for d in example_objects() if d["apiVersion"].startswith("kiln.dev/")]
    assert {d["kind"] for d in ours} >= {"TrainingJob", "ModelDeployment"}
    out = kubectl_input(
        kube, in_namespace(ours, namespace), "apply", "--dry-run=server", "--server-side"
    )
    assert out.count("(server dry run)") == len(ours), out


# --- kubectl auth can-i -------------------------------------------------------------------


def can(kube: Kube, user: str, *args: str) -> bool:
    answer = kube.kubectl("auth", "can-i", f"--as={user}", *args, check=False)
    assert answer.stdout.strip() in ("yes", "no"), answer.stderr
    return answer.stdout.strip() == "yes"


@pytest.fixture
def cluster_rbac(kube: Kube, crds: None, namespace: str) -> Iterator[str]:
    """base/'s ServiceAccount, ClusterRole and binding, under unique cluster-scoped names."""
    base = kustomize("manifests/base")
    suffix = secrets.token_hex(3)
    (account,) = find(base, "ServiceAccount")
    (role,) = find(base, "ClusterRole")
    (binding,) = find(base, "ClusterRoleBinding")
    role["metadata"]["name"] = binding["roleRef"]["name"] = f"kiln-operator-e2e-{suffix}"
    binding["metadata"]["name"] = f"kiln-operator-e2e-{suffix}"
    objects = in_namespace([account, role, binding], namespace)
    kubectl_input(kube, objects, "apply")
    yield f"system:serviceaccount:{namespace}:kiln-operator"
    kube.kubectl("delete", "clusterrolebinding,clusterrole", f"kiln-operator-e2e-{suffix}")


def test_cluster_wide_operator_can_do_what_it_needs(kube: Kube, cluster_rbac: str) -> None:
    sa = cluster_rbac
    needed = [
        ("list", "trainingjobs.kiln.dev", "-A"),
        ("watch", "modeldeployments.kiln.dev", "-A"),
        ("create", "modelversions.kiln.dev", "-n", "team-a"),
        ("patch", "trainingjobs.kiln.dev", "-n", "team-a", "--subresource=status"),
        ("patch", "modeldeployments.kiln.dev", "-n", "team-a", "--subresource=status"),
        ("patch", "modelversions.kiln.dev", "-n", "team-a", "--subresource=status"),
        ("update", "trainingjobs.kiln.dev", "-n", "team-a", "--subresource=finalizers"),
        ("create", "pods", "-n", "team-a"),
        ("delete", "pods", "-n", "team-a"),
        ("watch", "pods", "-A"),
        ("get", "pods", "-n", "team-a", "--subresource=log"),  # the trainer's phase
        ("create", "deployments.apps", "-n", "team-a"),
        ("patch", "services", "-n", "team-a"),
        ("patch", "httproutes.gateway.networking.k8s.io", "-n", "team-a"),
        ("get", "secrets", "-n", "team-a"),
        ("create", "events", "-n", "team-a"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
        ("patch", "clusterkopfpeerings.kopf.dev"),
    ]
    for args in needed:
        assert can(kube, sa, *args), f"cannot {' '.join(args)}"


def test_cluster_wide_operator_cannot_do_more(kube: Kube, cluster_rbac: str) -> None:
    sa = cluster_rbac
    forbidden = [
        ("list", "secrets", "-A"),
        ("watch", "secrets", "-A"),
        ("list", "secrets", "-n", "team-a"),
        ("create", "secrets", "-n", "team-a"),
        ("delete", "namespaces"),
        ("create", "namespaces"),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        ("create", "rolebindings.rbac.authorization.k8s.io", "-n", "team-a"),
        ("create", "pods", "-n", "team-a", "--subresource=exec"),
        ("create", "pods", "-n", "team-a", "--subresource=portforward"),
        ("create", "pods", "-n", "team-a", "--subresource=log"),
        ("delete", "trainingjobs.kiln.dev", "-n", "team-a"),
        ("delete", "modelversions.kiln.dev", "-n", "team-a"),
        ("update", "modelversions.kiln.dev", "-n", "team-a"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
        ("update", "nodes"),
        ("create", "serviceaccounts", "-n", "team-a", "--subresource=token"),
        ("impersonate", "users"),
        ("get", "configmaps", "-n", "kube-system"),
        ("*", "*"),
    ]
    for args in forbidden:
        assert not can(kube, sa, *args), f"can {' '.join(args)}"


@pytest.fixture
def operator_namespace(kube: Kube, crds: None, namespace: str) -> Iterator[str]:
    """The namespaced overlay installed into the test namespace (images from its registry)."""
    overlay = kustomize("manifests/overlays/namespaced")
    objects = in_namespace(
        [o for o in overlay if o["kind"] != "CustomResourceDefinition"], namespace
    )
    (deployment,) = find(objects, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    # Where this cluster's Prometheus and S3 are (the overlay's defaults are in-cluster names).
    for name, value in (
        ("KILN_PROMETHEUS_URL", kube.prometheus_url),
        ("KILN_S3_ENDPOINT", kube.s3_endpoint),
    ):
        if value:
            env.setdefault(name, {"name": name})["value"] = value
    container["env"] = list(env.values())
    kubectl_input(kube, objects, "apply")
    yield namespace
    kube.kubectl("-n", namespace, "delete", "deployment", "kiln-operator", "--wait=true")


def test_namespaced_operator_is_confined(kube: Kube, operator_namespace: str) -> None:
    sa = f"system:serviceaccount:{operator_namespace}:kiln-operator"
    ns = ("-n", operator_namespace)
    for args in [
        ("watch", "trainingjobs.kiln.dev", *ns),
        ("patch", "trainingjobs.kiln.dev", *ns, "--subresource=status"),
        ("create", "pods", *ns),
        ("get", "secrets", *ns),
        ("patch", "kopfpeerings.kopf.dev", *ns),
    ]:
        assert can(kube, sa, *args), f"cannot {' '.join(args)}"
    for args in [
        ("list", "trainingjobs.kiln.dev", "-A"),
        ("create", "pods", "-n", "default"),
        ("get", "secrets", "-n", "default"),
        ("list", "secrets", *ns),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("patch", "clusterkopfpeerings.kopf.dev"),
    ]:
        assert not can(kube, sa, *args), f"can {' '.join(args)}"


def test_operator_runs_in_cluster_under_its_service_account(
    kube: Kube, operator_namespace: str
) -> None:
    ns = operator_namespace
    selector = "app.kubernetes.io/name=kiln,app.kubernetes.io/component=operator"

    def ready_pod() -> Any:
        for pod in kube.core.list_namespaced_pod(ns, label_selector=selector).items:
            for condition in pod.status.conditions or []:
                if condition.type == "Ready" and condition.status == "True":
                    return pod
        return None

    pod = wait_for(ready_pod, 120, f"a Ready operator pod in {ns}", interval=1)
    assert pod.spec.service_account_name == "kiln-operator"
    assert pod.spec.containers[0].security_context.read_only_root_filesystem is True

    # kopf peering under the Role: the pod keeps itself alive in the namespace's KopfPeering.
    def peering() -> Any:
        answer = kube.kubectl("-n", ns, "get", "kopfpeering", "default", "-o", "json")
        return pod.metadata.name in (json.loads(answer.stdout).get("status") or {})

    wait_for(peering, 60, "the operator in KopfPeering default", interval=1)

    if kube.local:  # pod IPs are reachable from this host on the local cluster
        with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8080/metrics", timeout=10) as r:
            assert b"kiln_training_runs" in r.read()

    # It reconciles: a TrainingJob in its namespace gets a status written by the operator
    # (through the status subresource) and a training pod (created under the Role).
    job = yaml.safe_load((ROOT / "examples/iris/trainingjob.yaml").read_text())
    job["metadata"] = {"name": "iris", "namespace": ns}
    job["spec"]["dataset"]["uri"] = "s3://missing-bucket/iris.csv"
    job["spec"]["backoffLimit"] = 0
    kubectl_input(kube, [job], "apply")

    def reconciled() -> Any:
        raw = kube.kubectl("-n", ns, "get", "trainingjob", "iris", "-o", "json").stdout
        status = json.loads(raw).get("status") or {}
        return status if status.get("conditions") else None

    status = wait_for(reconciled, 90, "the operator to write the TrainingJob's status", 1)
    assert isinstance(status.get("observedGeneration"), int)
    pods = kube.kubectl("-n", ns, "get", "pods", "-l", "kiln.dev/training-job-uid", "-o", "name")
    assert pods.stdout.strip(), "no training pod was created"
    logs = kube.kubectl("-n", ns, "logs", pod.metadata.name, check=False).stdout
    # The only refusals: kopf's best-effort scan of cluster-scoped namespaces/CRDs, which
    # the namespaced install deliberately does not grant (kopf falls back to the list it
    # was given and says so).
    refused = [line for line in logs.splitlines() if "Forbidden" in line or " 403" in line]
    for line in refused:
        assert 'resource "namespaces"' in line or "customresourcedefinitions" in line, line
    kube.kubectl("-n", ns, "delete", "trainingjob", "iris", "--wait=true")


def _custom(kube: Kube, namespace: str, plural: str, name: str) -> dict[str, Any]:
    answer = kube.kubectl("-n", namespace, "get", plural, name, "-o", "json", check=False)
    return json.loads(answer.stdout) if answer.returncode == 0 else {}


def _approved(kube: Kube, namespace: str, version: str) -> bool:
    conditions = (_custom(kube, namespace, "modelversions", version).get("status") or {}).get(
        "conditions", []
    )
    return any(c["type"] == "Approved" and c["status"] == "True" for c in conditions)


def rollout_summary(status: dict[str, Any]) -> str:
    """The phase, message and every analysis result in a line each (pytest truncates dicts)."""
    lines = [f"{status.get('phase')} ({status.get('reason')}): {status.get('message')}"]
    for a in status.get("analysis") or []:
        lines.append(
            f"  step {a.get('step')} {a.get('check')}={a.get('value')} "
            f"stable={a.get('stableValue')} [{a.get('min')}, {a.get('max')}] "
            f"{a.get('outcome')} requests={a.get('requests')}: {a.get('message')}"
        )
    return "\n".join(lines)


def test_iris_story_with_the_in_cluster_operator(kube: Kube, operator_namespace: str) -> None:
    """Train -> Approved iris-v1 -> served -> retrain -> iris-v2 canary -> Promoted, with the
    operator running as a pod under its namespaced ServiceAccount: its RBAC is sufficient."""
    ns = operator_namespace
    s3 = boto3.client(
        "s3",
        endpoint_url=kube.s3_endpoint,
        aws_access_key_id=kube.s3_access_key,
        aws_secret_access_key=kube.s3_secret_key,
        region_name="us-east-1",
    )
    bucket = f"story-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(ROOT / "examples/data/iris.csv"), bucket, "iris.csv")
    kube.core.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": "s3-credentials"},
            "stringData": {
                "AWS_ACCESS_KEY_ID": kube.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": kube.s3_secret_key,
            },
        },
    )
    job = yaml.safe_load((ROOT / "examples/iris/trainingjob.yaml").read_text())
    job["metadata"] = {"name": "iris", "namespace": ns}
    job["spec"]["dataset"]["uri"] = f"s3://{bucket}/iris.csv"
    job["spec"]["output"]["uri"] = f"s3://{bucket}/models"
    del job["spec"]["triggers"]
    md = yaml.safe_load((ROOT / "examples/iris/modeldeployment.yaml").read_text())
    md["metadata"] = {"name": "iris", "namespace": ns}
    md["spec"]["replicas"] = 2
    # The example's own failureLimit (1) stays: a blip on a busy machine gets a second look.
    md["spec"]["canary"].update(steps=[50], intervalSeconds=10, minRequests=10)
    kubectl_input(kube, [job, md], "apply")

    wait_for(lambda: _approved(kube, ns, "iris-v1"), 240, "an Approved iris-v1", interval=1)

    def rollout() -> dict[str, Any]:
        return dict(_custom(kube, ns, "modeldeployments", "iris").get("status") or {})

    def serving(version: str) -> bool:
        current = rollout()
        return current.get("phase") == "Promoted" and current.get("stableVersion") == version

    wait_for(lambda: serving("iris-v1"), 180, "iris-v1 serving", interval=1)
    service = kube.core.read_namespaced_service("iris", ns)
    with load(f"http://{service.spec.cluster_ip}:80") as codes:
        kube.kubectl("-n", ns, "annotate", "trainingjob", "iris", "kiln.dev/retrain=2")
        wait_for(lambda: _approved(kube, ns, "iris-v2"), 240, "an Approved iris-v2", interval=1)

        def promoted_v2() -> bool:
            current = rollout()
            assert current.get("phase") not in ("RolledBack", "Failed"), rollout_summary(current)
            return serving("iris-v2")

        wait_for(promoted_v2, 300, "iris-v2 promoted by the in-cluster operator", interval=1)
    assert codes[200] > 0
    assert not any(code >= 500 for code in codes), codes

    # The GitOps tools' verdicts on the real objects of this run: all settled and healthy.
    objects = [
        _custom(kube, ns, "trainingjobs", "iris"),
        _custom(kube, ns, "modelversions", "iris-v1"),
        _custom(kube, ns, "modelversions", "iris-v2"),
        wait_for(
            lambda: (lambda md: md if argocd_health(md)["status"] == "Healthy" else None)(
                _custom(kube, ns, "modeldeployments", "iris")
            ),
            120,
            "the promoted ModelDeployment to settle",
            interval=1,
        ),
    ]
    for obj in objects:
        assert argocd_health(obj)["status"] == "Healthy", (obj["kind"], obj.get("status"))
    verdicts = kstatus(objects)
    assert [v["status"] for v in verdicts] == ["Current"] * len(objects), verdicts
