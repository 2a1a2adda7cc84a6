"""Command lines of the control-plane components (pure: paths in, argv out)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from kilndev import config
from kilndev.config import ClusterPaths


def apiserver_url() -> str:
    return f"https://127.0.0.1:{config.APISERVER_PORT}"


def etcd(bin_dir: Path, paths: ClusterPaths) -> list[str]:
    client = f"http://127.0.0.1:{config.ETCD_CLIENT_PORT}"
    peer = f"http://127.0.0.1:{config.ETCD_PEER_PORT}"
    return [
        str(bin_dir / "etcd"),
        "--name=kiln",
        f"--data-dir={paths.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=kiln={peer}",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        # A throwaway dev cluster: durability across power loss is not worth fsync latency.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver(bin_dir: Path, paths: ClusterPaths) -> list[str]:
    pki = paths.pki
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{config.ETCD_CLIENT_PORT}",
        "--bind-address=0.0.0.0",
        f"--secure-port={config.APISERVER_PORT}",
        # Pods reach the API through the `kubernetes` Service, whose endpoint is this address.
        f"--advertise-address={config.GATEWAY_IP}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--service-account-issuer=https://kubernetes.default.svc.{config.CLUSTER_DOMAIN}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={config.SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        # PodSecurity, ServiceAccount, ... are on by default; NodeRestriction limits the
        # kubelets to their own Node and pods, as on a real node.
        "--enable-admission-plugins=NodeRestriction",
        # Privileged pods must reach Pod Security admission (which rejects them in a
        # `restricted` namespace) rather than be refused wholesale by this flag.
        "--allow-privileged=true",
        "--profiling=false",
        "--event-ttl=2h",
        "--v=1",
    ]


def controller_manager(bin_dir: Path, paths: ClusterPaths) -> list[str]:
    pki = paths.pki
    kubeconfig = paths.kubeconfig_for("controller-manager")
    return [
        str(bin_dir / "kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        "--use-service-account-credentials=true",
        f"--service-cluster-ip-range={config.SERVICE_CIDR}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        "--secure-port=10257",
        "--v=1",
    ]


def scheduler(bin_dir: Path, paths: ClusterPaths) -> list[str]:
    kubeconfig = paths.kubeconfig_for("scheduler")
    return [
        str(bin_dir / "kube-scheduler"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        "--secure-port=10259",
        "--v=1",
    ]


def kube_proxy(bin_dir: Path, paths: ClusterPaths) -> list[str]:
    return [
        str(bin_dir / "kube-proxy"),
        f"--kubeconfig={paths.kubeconfig_for('kube-proxy')}",
        f"--hostname-override={config.NODE_NAME}",
        "--proxy-mode=iptables",
        f"--cluster-cidr={config.POD_NETWORK}",
        # Pods share one bridge; without br_netfilter a reply from a backend pod to a client
        # pod would bypass the host's conntrack. Masquerading every service hop makes the
        # reply come back through the host, so ClusterIPs work pod-to-pod too.
        "--masquerade-all",
        "--healthz-bind-address=127.0.0.1:10256",
        "--metrics-bind-address=127.0.0.1:10249",
        # Leave the host's conntrack table size alone.
        "--conntrack-max-per-core=0",
        "--v=1",
    ]


def registry(paths: ClusterPaths) -> list[str]:
    return [str(config.registry_bin()), "serve", str(paths.root / "registry.yml")]


def coredns(paths: ClusterPaths) -> list[str]:
    return [str(config.coredns_bin()), "-conf", str(paths.root / "Corefile")]


def prometheus(paths: ClusterPaths) -> list[str]:
    return [
        str(config.prometheus_bin()),
        f"--config.file={paths.root / 'prometheus.yml'}",
        f"--storage.tsdb.path={paths.prometheus_data}",
        f"--web.listen-address={config.GATEWAY_IP}:{config.PROMETHEUS_PORT}",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
    ]


# SeaweedFS listeners; each serves gRPC on its port + 10000 (SeaweedFS's default).
SEAWEEDFS_PORTS = {"s3": config.S3_PORT, "master": 9333, "volume": 8080, "filer": 8888}


def seaweedfs_sockets() -> list[Path]:
    """The unix sockets SeaweedFS makes for its own local traffic. Their paths are fixed
    (`/tmp/seaweedfs-<what>-<port>.sock`) and it leaves them behind when it stops."""
    found: list[Path] = []
    for port in SEAWEEDFS_PORTS.values():
        for candidate in (port, port + 10000):
            found += Path("/tmp").glob(f"seaweedfs-*-{candidate}.sock")
    return found


def seaweedfs(paths: ClusterPaths) -> list[str]:
    return [
        _venv_program("weed"),
        "server",
        f"-dir={paths.s3_data}",
        f"-ip={config.GATEWAY_IP}",
        f"-ip.bind={config.GATEWAY_IP}",
        "-s3",
        f"-s3.port={SEAWEEDFS_PORTS['s3']}",
        f"-s3.config={paths.root / 's3.json'}",
        f"-master.port={SEAWEEDFS_PORTS['master']}",
        f"-volume.port={SEAWEEDFS_PORTS['volume']}",
        f"-filer.port={SEAWEEDFS_PORTS['filer']}",
        # SeaweedFS reports usage off the machine unless told not to.
        "-master.telemetry=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=64",
        # Every bucket is a collection that grows 7 volumes at once: 16 allowed two buckets.
        # Volumes are sparse files (no preallocation), so a high limit costs nothing.
        "-volume.max=256",
    ]


def _venv_program(name: str) -> str:
    """A console script installed beside the running interpreter (the project's venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)
