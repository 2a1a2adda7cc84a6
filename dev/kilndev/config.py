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

CONTAINERD_VERSION = "v2.4.2"
REGISTRY_VERSION = "v3.1.2"
COREDNS_VERSION = "v1.15.0"

NODE_NAME = "kiln-node"  # the first node; node i > 0 is kiln-node-<i+1>
BRIDGE = "kiln0"
# Every address below stays on this machine. All nodes' pods share one bridge and one /16:
# 10.244.0.0/24 holds the host's own addresses (the gateway, which is also the first node's
# IP, then one per further node), and node i gets the pod range 10.244.<i+1>.0/24.
POD_NETWORK = ipaddress.ip_network("10.244.0.0/16")
GATEWAY_IP = ipaddress.ip_address("10.244.0.1")  # the bridge's address on the host
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")
KUBERNETES_SERVICE_IP = ipaddress.ip_address("10.96.0.1")
DNS_SERVICE_IP = ipaddress.ip_address("10.96.0.10")  # kube-system/kube-dns (CoreDNS)
APISERVER_PORT = 6443
KUBELET_PORT = 10250  # each kubelet binds it on its own node IP
REGISTRY_PORT = 5000  # the image registry, on loopback: containerd pulls from the host
COREDNS_READY_PORT = 8181
MAX_NODES = 8
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
PROMETHEUS_PORT = 9090
S3_PORT = 8333
CLUSTER_DOMAIN = "cluster.local"


def cache_root() -> Path:
    return Path(os.environ.get("KILN_CACHE", Path.home() / ".cache" / "kiln"))


def k8s_bin_dir() -> Path:
    return cache_root() / f"k8s-v{K8S_VERSION}" / "bin"


def containerd_bin_dir() -> Path:
    return cache_root() / f"containerd-{CONTAINERD_VERSION}" / "bin"


def registry_bin() -> Path:
    return cache_root() / f"registry-{REGISTRY_VERSION}" / "bin" / "registry"


def coredns_bin() -> Path:
    return cache_root() / f"coredns-{COREDNS_VERSION}" / "bin" / "coredns"


def registry_storage() -> Path:
    """The registry's blobs outlive the cluster (`down` keeps them): images are pushed once
    by `make images`, not at every `up`."""
    return cache_root() / "registry"


def registry_address() -> str:
    return f"127.0.0.1:{REGISTRY_PORT}"


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
    def nodes(self) -> Path:
        """One directory per node: containerd's state, the kubelet's, CNI's and pod logs."""
        return self.root / "nodes"

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
