"""Fixed layout of the local dev cluster: paths, addresses and versions.

Everything the cluster needs lives under one state directory so that `kiln dev down`
can remove it whole. Binaries are cached separately (`~/.cache/kiln/k8s-<version>/bin`)
so a machine builds Kubernetes once.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

K8S_VERSION = "1.37.2"
# The Go module version of Prometheus (tools/prometheus/go.mod); v0.316.0 is Prometheus 3.16.
PROMETHEUS_MODULE_VERSION = "v0.316.0"

NODE_NAME = "kiln-node"
BRIDGE = "kiln0"
# One node, one /24 of pods. Every address below stays on this machine: pod IPs live in
# network namespaces we create, and the service range gets a blackhole route.
POD_CIDR = ipaddress.ip_network("10.244.0.0/24")
GATEWAY_IP = ipaddress.ip_address("10.244.0.1")  # the bridge's address on the host
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")
KUBERNETES_SERVICE_IP = ipaddress.ip_address("10.96.0.1")
APISERVER_PORT = 6443
NODE_AGENT_PORT = 10250  # the kubelet port: the apiserver calls it for `kubectl logs`
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
PROMETHEUS_PORT = 9090
S3_PORT = 8333
CLUSTER_DOMAIN = "cluster.local"


def cache_root() -> Path:
    return Path(os.environ.get("KILN_CACHE", Path.home() / ".cache" / "kiln"))


def k8s_bin_dir() -> Path:
    return cache_root() / f"k8s-v{K8S_VERSION}" / "bin"


def prometheus_bin() -> Path:
    return cache_root() / f"prometheus-{PROMETHEUS_MODULE_VERSION}" / "bin" / "prometheus"


@dataclass(frozen=True)
class ClusterPaths:
    """Where one cluster keeps its state (certificates, etcd data, logs, pod sandboxes)."""

    root: Path

    @classmethod
    def default(cls) -> ClusterPaths:
        return cls(Path(os.environ.get("KILN_DEV_HOME", cache_root() / "cluster")))

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def node_state(self) -> Path:
        """The node agent's pod sandboxes, volumes and container logs."""
        return self.root / "node"

    @property
    def s3_data(self) -> Path:
        return self.root / "s3"

    @property
    def prometheus_data(self) -> Path:
        return self.root / "prometheus"

    @property
    def admin_kubeconfig(self) -> Path:
        """The kubeconfig handed to the user (cluster-admin)."""
        return self.root / "kubeconfig"

    def kubeconfig_for(self, component: str) -> Path:
        return self.root / f"{component}.kubeconfig"
