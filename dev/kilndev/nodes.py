"""The cluster's nodes: one kubelet and one containerd each, rendered from the node's index.

Pure: a node index and the cluster's paths in, configuration files and command lines out.
Every node has its own containerd (state, socket, runc root, CNI configuration and IPAM
data), its own kubelet root directory and cgroup root, its own IP on the shared bridge and
its own pod range, so several nodes on one machine behave as separate machines would for
the scheduler, spreading, PodDisruptionBudgets and drains.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from kilndev import config

# containerd asks these registries for images; each is answered by the local registry, so
# `busybox`, `python:3.11-slim` or `kiln/trainer:0.1.0` resolve as on any cluster and no
# pull ever leaves the machine (there is no fallback to the real registry).
MIRRORED_REGISTRIES = ("docker.io", "ghcr.io", "quay.io", "registry.k8s.io")
SANDBOX_IMAGE = "docker.io/library/pause:3.10"
CNI_BIN_DIR = "/usr/lib/cni"
RUNC = "/usr/sbin/runc"


@dataclass(frozen=True)
class Node:
    index: int
    root: Path  # the node's state directory

    @property
    def name(self) -> str:
        return config.NODE_NAME if self.index == 0 else f"{config.NODE_NAME}-{self.index + 1}"

    @property
    def ip(self) -> ipaddress.IPv4Address:
        """The node's InternalIP: the gateway for the first node, the next ones after it."""
        return ipaddress.IPv4Address(int(config.GATEWAY_IP) + self.index)

    @property
    def pod_range(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.244.{self.index + 1}.0/24")

    @property
    def cgroup_root(self) -> str:
        """The kubelet's cgroupRoot: pods of this node live under it in every hierarchy."""
        return f"/kiln/{self.name}"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def certs_dir(self) -> Path:
        """containerd's registry configuration (`<host>/hosts.toml`)."""
        return self.root / "containerd" / "certs.d"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def healthz_port(self) -> int:
        return 10248

    def component(self, program: str) -> str:
        """The component name under which its process is recorded (`kubelet-kiln-node`)."""
        return f"{program}-{self.name}"


def cluster_nodes(root: Path, count: int) -> list[Node]:
    if not 1 <= count <= config.MAX_NODES:
        raise ValueError(f"a dev cluster has 1 to {config.MAX_NODES} nodes, not {count}")
    return [Node(i, root / f"node-{i}") for i in range(count)]


def containerd_config(node: Node) -> str:
    """containerd 2.x configuration (version 4: the listeners are server plugins)."""
    state = node.root / "containerd"
    lines = [
        "version = 4",
        f"root = '{state / 'root'}'",
        f"state = '{state / 'state'}'",
        "",
        "[plugins]",
        "  [plugins.'io.containerd.server.v1.grpc']",
        f"    address = '{node.containerd_socket}'",
        "  [plugins.'io.containerd.server.v1.ttrpc']",
        f"    address = '{node.containerd_socket}.ttrpc'",
        "  [plugins.'io.containerd.server.v1.debug']",
        f"    address = '{state / 'debug.sock'}'",
        "  [plugins.'io.containerd.nri.v1.nri']",
        "    disable = true",
        "  [plugins.'io.containerd.cri.v1.images']",
        "    snapshotter = 'overlayfs'",
        "    [plugins.'io.containerd.cri.v1.images'.pinned_images]",
        f"      sandbox = '{SANDBOX_IMAGE}'",
        "    [plugins.'io.containerd.cri.v1.images'.registry]",
        f"      config_path = '{node.certs_dir}'",
        "  [plugins.'io.containerd.cri.v1.runtime']",
        # Without CAP_SYS_RESOURCE (these machines, even as root) a negative oom_score_adj
        # for the pause container makes runc fail every sandbox; clamp to containerd's own.
        "    restrict_oom_score_adj = true",
        # Pod network namespaces under the node's state, so `down` finds and removes them.
        "    netns_mounts_under_state_dir = true",
        "    [plugins.'io.containerd.cri.v1.runtime'.containerd]",
        "      default_runtime_name = 'runc'",
        "      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]",
        "        runtime_type = 'io.containerd.runc.v2'",
        "        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
        f"          BinaryName = '{RUNC}'",
        f"          Root = '{state / 'runc'}'",
        "          SystemdCgroup = false",
        "    [plugins.'io.containerd.cri.v1.runtime'.cni]",
        f"      bin_dirs = ['{CNI_BIN_DIR}']",
        f"      conf_dir = '{node.cni_conf_dir}'",
        "      max_conf_num = 1",
        "  [plugins.'io.containerd.grpc.v1.cri']",
        "    stream_server_address = '127.0.0.1'",
        "    stream_server_port = '0'",
        "  [plugins.'io.containerd.transfer.v1.local']",
        f"    config_path = '{node.certs_dir}'",
        "",
    ]
    return "\n".join(lines)


def registry_hosts_toml() -> str:
    """Every mirrored registry resolves and pulls from the local one, over plain HTTP."""
    local = f"http://{config.registry_address()}"
    return (
        f'server = "{local}"\n'
        f'[host."{local}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        "  skip_verify = true\n"
    )


def registry_hosts(node: Node) -> dict[Path, str]:
    """hosts.toml files keyed by path: the mirrored names and the registry's own address."""
    hosts = (*MIRRORED_REGISTRIES, config.registry_address(), f"localhost:{config.REGISTRY_PORT}")
    return {node.certs_dir / host / "hosts.toml": registry_hosts_toml() for host in hosts}


def cni_conflist(node: Node) -> str:
    """The bridge shared by all nodes; this node's pods take addresses from its own range.

    `isGateway` stays off: the bridge already has the gateway (and other nodes') addresses,
    which the plugin would otherwise refuse as "a different address on the bridge".
    """
    first = node.pod_range.network_address + 2
    last = node.pod_range.broadcast_address - 1
    doc = {
        "cniVersion": "1.0.0",
        "name": "kiln",
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.BRIDGE,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(node.root / "cni" / "ipam"),
                    "ranges": [
                        [
                            {
                                "subnet": str(config.POD_NETWORK),
                                "rangeStart": str(first),
                                "rangeEnd": str(last),
                                "gateway": str(config.GATEWAY_IP),
                            }
                        ]
                    ],
                    "routes": [{"dst": "0.0.0.0/0", "gw": str(config.GATEWAY_IP)}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def kubelet_config(node: Node, pki_dir: Path, cgroup_v1: bool) -> str:
    doc: dict[str, object] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": str(node.ip),
        "port": config.KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": str(node.ip),
        "healthzPort": node.healthz_port,
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": True,
        "cgroupRoot": node.cgroup_root,
        "enforceNodeAllocatable": ["pods"],
        "failSwapOn": False,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki_dir / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki_dir / f"{node.name}-serving.crt"),
        "tlsPrivateKeyFile": str(pki_dir / f"{node.name}-serving.key"),
        "clusterDomain": config.CLUSTER_DOMAIN,
        "clusterDNS": [str(config.DNS_SERVICE_IP)],
        # Pods get the cluster's DNS only; the host's resolvers are never handed to a pod.
        "resolvConf": "",
        # Low thresholds: a dev machine's disk is often fuller than a node's would be.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
        },
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        "serializeImagePulls": False,
        "podPidsLimit": 4096,
        "maxPods": 110,
        "podLogsDir": str(node.pod_logs),
        "shutdownGracePeriod": "0s",
    }
    if cgroup_v1:
        # Kubernetes 1.35+ refuses cgroup v1 unless told; it is deprecated (KEP-5573).
        doc["failCgroupV1"] = False
    return yaml.safe_dump(doc, sort_keys=False)


def kubelet_argv(kubelet: Path, node: Node, kubeconfig: Path, config_file: Path) -> list[str]:
    return [
        str(kubelet),
        f"--config={config_file}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={node.kubelet_dir}",
        f"--hostname-override={node.name}",
        f"--node-ip={node.ip}",
        "--v=1",
    ]


def containerd_argv(containerd: Path, config_file: Path) -> list[str]:
    return [str(containerd), f"--config={config_file}", "--log-level=warn"]
