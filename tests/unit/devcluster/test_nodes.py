"""The nodes' configuration: what makes several kubelets on one machine separate nodes."""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path

import pytest
import yaml

from kilndev import config, nodes

pytestmark = pytest.mark.unit


def _two(tmp_path: Path) -> list[nodes.Node]:
    return nodes.cluster_nodes(tmp_path, 2)


def test_nodes_get_distinct_names_ips_pod_ranges_and_state(tmp_path: Path) -> None:
    first, second = _two(tmp_path)
    assert (first.name, second.name) == ("kiln-node", "kiln-node-2")
    assert first.ip == config.GATEWAY_IP and second.ip != first.ip
    assert {first.ip, second.ip} <= set(config.POD_NETWORK)
    assert not first.pod_range.overlaps(second.pod_range)
    assert first.pod_range.subnet_of(config.POD_NETWORK)  # type: ignore[arg-type]
    # Host addresses (the gateway, node IPs) are never handed to a pod.
    assert first.ip not in first.pod_range and second.ip not in second.pod_range
    assert first.root != second.root and first.cgroup_root != second.cgroup_root


@pytest.mark.parametrize("count", [0, config.MAX_NODES + 1])
def test_node_count_is_bounded(tmp_path: Path, count: int) -> None:
    with pytest.raises(ValueError, match="1 to"):
        nodes.cluster_nodes(tmp_path, count)


def test_containerd_keeps_all_its_state_and_sockets_under_the_node(tmp_path: Path) -> None:
    node = _two(tmp_path)[1]
    doc = tomllib.loads(nodes.containerd_config(node))
    assert doc["version"] == 4
    plugins = doc["plugins"]
    paths = [
        doc["root"],
        doc["state"],
        plugins["io.containerd.server.v1.grpc"]["address"],
        plugins["io.containerd.server.v1.ttrpc"]["address"],
        plugins["io.containerd.cri.v1.images"]["registry"]["config_path"],
        plugins["io.containerd.cri.v1.runtime"]["cni"]["conf_dir"],
        plugins["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]["options"][
            "Root"
        ],
    ]
    assert all(Path(p).is_relative_to(node.root) for p in paths)
    runtime = plugins["io.containerd.cri.v1.runtime"]
    # No CAP_SYS_RESOURCE on these machines: a negative oom_score_adj breaks every sandbox.
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["netns_mounts_under_state_dir"] is True


def test_every_mirrored_registry_pulls_from_the_local_one_only(tmp_path: Path) -> None:
    node = _two(tmp_path)[0]
    hosts = nodes.registry_hosts(node)
    names = {path.parent.name for path in hosts}
    assert {"docker.io", "ghcr.io", "registry.k8s.io", config.registry_address()} <= names
    for text in hosts.values():
        doc = tomllib.loads(text)
        local = f"http://{config.registry_address()}"
        assert doc["server"] == local  # no fallback to the real registry
        assert list(doc["host"]) == [local]


def test_cni_hands_out_the_node_range_on_the_shared_bridge(tmp_path: Path) -> None:
    first, second = _two(tmp_path)
    for node in (first, second):
        doc = json.loads(nodes.cni_conflist(node))
        bridge = doc["plugins"][0]
        assert bridge["bridge"] == config.BRIDGE and bridge["ipMasq"] is False
        (rng,) = bridge["ipam"]["ranges"][0]
        start = ipaddress.ip_address(rng["rangeStart"])
        end = ipaddress.ip_address(rng["rangeEnd"])
        assert start in node.pod_range and end in node.pod_range
        assert rng["gateway"] == str(config.GATEWAY_IP)
        assert Path(bridge["ipam"]["dataDir"]).is_relative_to(node.root)
        assert [p["type"] for p in doc["plugins"]] == ["bridge", "portmap"]


@pytest.mark.parametrize("v1", [True, False])
def test_kubelet_config_is_the_node_own(tmp_path: Path, v1: bool) -> None:
    node = _two(tmp_path)[1]
    doc = yaml.safe_load(nodes.kubelet_config(node, Path("/pki"), cgroup_v1=v1))
    assert doc["address"] == str(node.ip) and doc["healthzBindAddress"] == str(node.ip)
    assert doc["containerRuntimeEndpoint"] == f"unix://{node.containerd_socket}"
    assert doc["cgroupRoot"] == node.cgroup_root
    assert doc["tlsCertFile"] == f"/pki/{node.name}-serving.crt"
    assert doc["clusterDNS"] == [str(config.DNS_SERVICE_IP)]
    assert doc["authentication"]["anonymous"]["enabled"] is False
    assert doc["authorization"]["mode"] == "Webhook"
    # failCgroupV1 only where the host needs it.
    assert ("failCgroupV1" in doc) is v1


def test_kubelet_argv_names_the_node(tmp_path: Path) -> None:
    node = _two(tmp_path)[1]
    argv = nodes.kubelet_argv(Path("/bin/kubelet"), node, Path("/k"), Path("/c"))
    assert f"--hostname-override={node.name}" in argv and f"--node-ip={node.ip}" in argv
    assert f"--root-dir={node.kubelet_dir}" in argv
