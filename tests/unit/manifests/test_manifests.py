"""The kustomize manifests, rendered with `kubectl kustomize` and checked: least-privilege
RBAC, a Pod Security `restricted` operator Deployment, settings that match the code, and
CRD copies that match crds/. Schema validation against a real apiserver is in
tests/e2e/test_install.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tests.support.manifests import KUSTOMIZATIONS, ROOT, find, kustomize

from kiln.version import KILN_VERSION

pytestmark = pytest.mark.unit

RBAC_KINDS = ("Role", "ClusterRole")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {path: kustomize(path) for path in KUSTOMIZATIONS}


def rules(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [rule for role in find(objects, kind) for rule in role.get("rules", [])]


def allows(rule_list: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r.get("apiGroups", []) and resource in r["resources"] and verb in r["verbs"]
        for r in rule_list
    )


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_every_kustomization_renders(path: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert rendered[path]
    for obj in rendered[path]:
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"]


def test_no_wildcards_anywhere(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for path, objects in rendered.items():
        for kind in RBAC_KINDS:
            for rule in rules(objects, kind):
                for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                    assert "*" not in rule.get(field, []), (path, rule)
                assert "nonResourceURLs" not in rule, (path, rule)


def test_secrets_are_never_listed_or_watched_cluster_wide(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for path, objects in rendered.items():
        cluster = rules(objects, "ClusterRole")
        for verb in ("list", "watch", "create", "update", "patch", "delete", "deletecollection"):
            assert not allows(cluster, "", "secrets", verb), (path, verb)


def test_nothing_dangerous_is_granted(rendered: dict[str, list[dict[str, Any]]]) -> None:
    forbidden = [
        ("", "pods/exec"), ("", "pods/attach"), ("", "pods/portforward"),
        ("", "namespaces"), ("", "nodes"), ("", "serviceaccounts/token"),
        ("rbac.authorization.k8s.io", "clusterroles"), ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ]  # fmt: skip
    for path, objects in rendered.items():
        all_rules = rules(objects, "ClusterRole") + rules(objects, "Role")
        for group, resource in forbidden:
            for rule in all_rules:
                assert not (group in rule["apiGroups"] and resource in rule["resources"]), (
                    path,
                    rule,
                )
        # CRDs are read, never written, by the operator.
        for verb in ("create", "update", "patch", "delete"):
            assert not allows(all_rules, "apiextensions.k8s.io", "customresourcedefinitions", verb)


def test_every_rule_is_commented() -> None:
    for path in ("manifests/base/clusterrole.yaml", "manifests/overlays/namespaced/role.yaml"):
        lines = (ROOT / path).read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:"):
                assert lines[i - 1].strip().startswith("#"), f"{path}:{i + 1} has no comment"


def _used_resources() -> set[tuple[str, str]]:
    """Every resource the operator's code talks to: the apiserver client's `Resource`s (the
    only ones the handlers and services use) and every resource a kopf handler watches."""
    import kopf

    import kiln.handlers  # noqa: F401  (registers the handlers with kopf)
    from kiln.k8s import client

    found = {
        (value.group, value.plural)
        for value in vars(client).values()
        if isinstance(value, client.Resource)
    }
    for handler in kopf.get_default_registry()._watching.get_all_handlers():
        selector = handler.selector
        assert selector is not None and selector.group is not None
        found.add((selector.group, str(selector.plural or selector.any_name)))
    return found


@pytest.mark.parametrize(
    ("path", "kind"),
    [("manifests/base", "ClusterRole"), ("manifests/overlays/namespaced", "Role")],
)
def test_rbac_covers_what_the_code_uses(
    path: str, kind: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    granted = rules(rendered[path], kind)
    used = _used_resources()
    assert ("", "pods") in used and ("kiln.dev", "trainingjobs") in used
    for group, plural in used:
        if plural == "events":
            continue  # only ever created (below)
        assert allows(granted, group, plural, "get"), (group, plural)
        if plural not in ("secrets", "events"):
            assert allows(granted, group, plural, "list") or plural == "httproutes", plural
    for plural in ("trainingjobs", "modelversions", "modeldeployments"):
        assert allows(granted, "kiln.dev", f"{plural}/status", "patch")
    assert allows(granted, "", "events", "create")
    # The trainer's phase: the tail of a running training pod's log (KubeClient.logs).
    assert allows(granted, "", "pods/log", "get")


def test_pod_logs_are_only_read(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for path, objects in rendered.items():
        for rule in rules(objects, "ClusterRole") + rules(objects, "Role"):
            if "pods/log" in rule["resources"]:
                assert rule["verbs"] == ["get"], (path, rule)
                assert rule["resources"] == ["pods/log"], (path, rule)


def test_namespaced_overlay_has_no_cluster_permission(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["manifests/overlays/namespaced"]
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")
    (role,) = find(objects, "Role")
    (binding,) = find(objects, "RoleBinding")
    (deployment,) = find(objects, "Deployment")
    namespace = deployment["metadata"]["namespace"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
    assert binding["subjects"][0]["namespace"] == namespace
    assert env(deployment)["KILN_NAMESPACES"] == namespace
    assert find(objects, "KopfPeering", "default")[0]["metadata"]["namespace"] == namespace


def env(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize(
    "path", ["manifests/base", "manifests/overlays/namespaced", "manifests/overlays/dev"]
)
def test_operator_deployment(path: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    (deployment,) = find(rendered[path], "Deployment", "kiln-operator")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    # Pod Security `restricted`.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    assert not sc.get("privileged")
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(forbidden)
    assert all("hostPath" not in v for v in pod.get("volumes", []))
    # Read-only root with a writable /tmp.
    assert sc["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # Probes on kopf's liveness endpoint, as operator.py serves it.
    operator_py = (ROOT / "operator/kiln/operator.py").read_text()
    assert 'default="http://0.0.0.0:8081/healthz"' in operator_py
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(ports["metrics"])
    assert pod["serviceAccountName"] == "kiln-operator"


def test_env_matches_settings(rendered: dict[str, list[dict[str, Any]]]) -> None:
    read = set(re.findall(r'"(KILN_[A-Z_]+)"', (ROOT / "operator/kiln/settings.py").read_text()))
    (deployment,) = find(rendered["manifests/base"], "Deployment")
    variables = {k for k in env(deployment) if k.startswith("KILN_")}
    optional = {"KILN_ARTIFACT_URI", "KILN_S3_ENDPOINT"}  # documented in a comment
    assert variables <= read, variables - read
    assert read - optional <= variables, (read - optional) - variables
    assert env(deployment)["KILN_METRICS_PORT"] == "8080"


def test_dev_overlay(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (deployment,) = find(rendered["manifests/overlays/dev"], "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    # The images `make images` pushes to the local registry, under their released names.
    assert container["image"] == f"kiln/operator:{KILN_VERSION}"
    assert container["imagePullPolicy"] == "IfNotPresent"
    values = env(deployment)
    assert values["KILN_PROMETHEUS_URL"] == "http://10.244.0.1:9090"
    assert values["KILN_TRAINER_IMAGE"] == f"kiln/trainer:{KILN_VERSION}"
    assert values["KILN_SERVER_IMAGE"] == f"kiln/server:{KILN_VERSION}"


def test_base_is_the_root_and_installs_leader_safety(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    def names(objs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return sorted((o["kind"], o["metadata"]["name"]) for o in objs)

    assert names(rendered["manifests"]) == names(rendered["manifests/base"])
    base = rendered["manifests/base"]
    assert find(base, "ClusterKopfPeering", "default")
    crds = {o["metadata"]["name"] for o in find(base, "CustomResourceDefinition")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= crds
    assert {"trainingjobs.kiln.dev", "modelversions.kiln.dev", "modeldeployments.kiln.dev"} <= crds
    (deployment,) = find(base, "Deployment")
    # kopf names its peer by the pod (POD_ID); no --standalone, which would skip peering.
    assert env(deployment)["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--standalone" not in container.get("args", [])


def test_crd_copies_match_the_generated_crds() -> None:
    generated = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    assert generated
    for name in generated:
        copy = ROOT / "manifests/crds" / name
        assert copy.exists(), f"manifests/crds/{name} missing: run `make crds`"
        assert copy.read_text() == (ROOT / "crds" / name).read_text(), (
            f"manifests/crds/{name} differs from crds/{name}: run `make crds`"
        )
