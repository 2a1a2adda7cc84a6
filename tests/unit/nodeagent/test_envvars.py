from typing import Any

import pytest

from kiln.devcluster.nodeagent.envvars import (
    EnvError,
    EnvSources,
    expand,
    expand_argv,
    referenced_objects,
    resolve_env,
    service_env,
    with_defaults,
)
from kiln.devcluster.nodeagent.fieldrefs import PodAddresses

pytestmark = pytest.mark.unit

ADDRESSES = PodAddresses(pod_ip="10.244.0.7", host_ip="10.244.0.1")
POD: dict[str, Any] = {
    "metadata": {
        "name": "trainer-1",
        "namespace": "ml",
        "uid": "u-1",
        "labels": {"app": "trainer"},
        "annotations": {"kiln.dev/run": "7"},
    },
    "spec": {"nodeName": "kiln-node", "serviceAccountName": "runner", "containers": []},
}


def env_of(container: dict[str, Any], sources: EnvSources | None = None) -> dict[str, str]:
    return resolve_env(POD, container, ADDRESSES, sources or EnvSources())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)-$(B)", "1-2"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("cost $5", "cost $5"),
        ("$(A", "$(A"),
        ("end$", "end$"),
    ],
)
def test_expansion_follows_kubernetes_rules(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "2"}) == expected


def test_values_see_earlier_variables_only() -> None:
    env = env_of(
        {
            "env": [
                {"name": "LATER_REF", "value": "$(B)"},
                {"name": "A", "value": "a"},
                {"name": "B", "value": "$(A)b"},
            ]
        }
    )
    assert env == {"LATER_REF": "$(B)", "A": "a", "B": "ab"}


def test_field_refs() -> None:
    paths = {
        "NAME": "metadata.name",
        "NS": "metadata.namespace",
        "UID": "metadata.uid",
        "APP": "metadata.labels['app']",
        "RUN": "metadata.annotations['kiln.dev/run']",
        "NODE": "spec.nodeName",
        "SA": "spec.serviceAccountName",
        "IP": "status.podIP",
        "HOST": "status.hostIP",
    }
    container = {
        "env": [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in paths.items()]
    }
    assert env_of(container) == {
        "NAME": "trainer-1",
        "NS": "ml",
        "UID": "u-1",
        "APP": "trainer",
        "RUN": "7",
        "NODE": "kiln-node",
        "SA": "runner",
        "IP": "10.244.0.7",
        "HOST": "10.244.0.1",
    }


def test_resource_field_refs_round_up_and_default_to_node_allocatable() -> None:
    container = {
        "resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "250m"}},
        "env": [
            {
                "name": "MEM_MI",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "CPU_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
            {
                "name": "CPU_REQ_M",
                "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}},
            },
            {
                "name": "CPU_LIM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "0"}},
            },
        ],
    }
    env = env_of(container, EnvSources(node_allocatable={"cpu": "2", "memory": "8Gi"}))
    assert env == {"MEM_MI": "1024", "CPU_REQ": "1", "CPU_REQ_M": "250", "CPU_LIM": "2"}


def test_configmap_and_secret_keys() -> None:
    sources = EnvSources(configmaps={"cfg": {"mode": "fast"}}, secrets={"creds": {"token": "t0k"}})
    container = {
        "env": [
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x", "optional": True}},
            },
        ]
    }
    assert env_of(container, sources) == {"MODE": "fast", "TOKEN": "t0k"}


def test_missing_required_reference_is_a_config_error() -> None:
    container = {
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]
    }
    with pytest.raises(EnvError, match='configmap "cfg" not found'):
        env_of(container)
    with pytest.raises(EnvError, match="couldn't find key k"):
        env_of(container, EnvSources(configmaps={"cfg": {}}))


def test_env_from_with_prefix_is_overridden_by_env() -> None:
    sources = EnvSources(configmaps={"cfg": {"A": "from-cm", "B": "b", "bad key": "x"}})
    container = {
        "envFrom": [
            {"configMapRef": {"name": "cfg"}, "prefix": "P_"},
            {"configMapRef": {"name": "cfg"}},
        ],
        "env": [{"name": "A", "value": "explicit"}],
    }
    env = env_of(container, sources)
    assert env["P_A"] == "from-cm" and env["B"] == "b"
    assert env["A"] == "explicit"
    assert "bad key" not in env


def test_service_links_have_lowest_precedence_but_can_be_referenced() -> None:
    sources = EnvSources(service_env={"KUBERNETES_SERVICE_HOST": "10.96.0.1", "X": "svc"})
    env = env_of(
        {
            "env": [
                {"name": "X", "value": "mine"},
                {"name": "URL", "value": "https://$(KUBERNETES_SERVICE_HOST)"},
            ]
        },
        sources,
    )
    assert env["X"] == "mine"
    assert env["URL"] == "https://10.96.0.1"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


def test_service_env_matches_kubelet_names() -> None:
    services = [
        {
            "metadata": {"name": "kubernetes"},
            "spec": {
                "clusterIP": "10.96.0.1",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP"}],
            },
        },
        {
            "metadata": {"name": "model-server"},
            "spec": {"clusterIP": "10.96.3.4", "ports": [{"port": 80}]},
        },
        {"metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}},
    ]
    env = service_env(services)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT"] == "tcp://10.96.0.1:443"
    assert env["KUBERNETES_PORT_443_TCP_ADDR"] == "10.96.0.1"
    assert env["MODEL_SERVER_SERVICE_HOST"] == "10.96.3.4"
    assert not any(k.startswith("HEADLESS") for k in env)


def test_argv_expansion_uses_final_env() -> None:
    assert expand_argv(["echo", "$(A)", "$$(A)"], {"A": "x"}) == ["echo", "x", "$(A)"]


def test_defaults_put_the_venv_first_and_yield_to_the_pod() -> None:
    env = with_defaults({"HOME": "/data"}, "/venv/bin", "pod-1", "/")
    assert env["PATH"].startswith("/venv/bin:")
    assert env["HOSTNAME"] == "pod-1" and env["HOME"] == "/data"


def test_referenced_objects() -> None:
    container = {
        "envFrom": [{"secretRef": {"name": "s1"}}],
        "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}}],
    }
    assert referenced_objects(container) == ({"c1"}, {"s1"})
