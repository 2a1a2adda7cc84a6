"""Configuration of the cluster's add-on services (pure): Prometheus, the S3 store, the
image registry and the cluster DNS."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from kilndev import config

SCRAPE_INTERVAL = "5s"


def prometheus_config(pki_dir: Path, apiserver_url: str) -> str:
    """Prometheus discovers pods through this cluster's API, as a real install would.

    Pods opt in with the conventional annotations `prometheus.io/scrape: "true"`,
    `prometheus.io/port` and `prometheus.io/path`; their labels become series labels.
    """
    k8s_sd = {
        "role": "pod",
        "api_server": apiserver_url,
        "tls_config": {
            "ca_file": str(pki_dir / "ca.crt"),
            "cert_file": str(pki_dir / "prometheus.crt"),
            "key_file": str(pki_dir / "prometheus.key"),
        },
    }
    ann = "__meta_kubernetes_pod_annotation_prometheus_io_"
    relabel = [
        {"source_labels": [f"{ann}scrape"], "action": "keep", "regex": "true"},
        {"source_labels": ["__meta_kubernetes_pod_phase"], "action": "keep", "regex": "Running"},
        {
            "source_labels": ["__address__", f"{ann}port"],
            "action": "replace",
            "regex": r"([^:]+)(?::\d+)?;(\d+)",
            "replacement": "$1:$2",
            "target_label": "__address__",
        },
        {
            "source_labels": [f"{ann}path"],
            "action": "replace",
            "regex": "(.+)",
            "target_label": "__metrics_path__",
        },
        {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
        {
            "source_labels": ["__meta_kubernetes_namespace"],
            "action": "replace",
            "target_label": "namespace",
        },
        {
            "source_labels": ["__meta_kubernetes_pod_name"],
            "action": "replace",
            "target_label": "pod",
        },
    ]
    doc = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "kubernetes-pods",
                # As the community chart's pod job: a target's own labels win, so the
                # operator's series keep the namespace of the object they describe (not
                # the operator pod's, renamed exported_namespace).
                "honor_labels": True,
                "kubernetes_sd_configs": [k8s_sd],
                "relabel_configs": relabel,
            },
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [f"{config.GATEWAY_IP}:{config.PROMETHEUS_PORT}"]}],
            },
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str

    @classmethod
    def generate(cls) -> S3Credentials:
        return cls("kiln" + secrets.token_hex(8), secrets.token_urlsafe(30))

    @classmethod
    def load(cls, path: Path) -> S3Credentials:
        ident = json.loads(path.read_text())["identities"][0]["credentials"][0]
        return cls(ident["accessKey"], ident["secretKey"])


def seaweedfs_s3_config(creds: S3Credentials) -> str:
    """SeaweedFS S3 identities: one admin key, so anonymous access is refused."""
    return json.dumps(
        {
            "identities": [
                {
                    "name": "kiln",
                    "credentials": [{"accessKey": creds.access_key, "secretKey": creds.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        },
        indent=2,
    )


def s3_endpoint() -> str:
    return f"http://{config.GATEWAY_IP}:{config.S3_PORT}"


def prometheus_url() -> str:
    return f"http://{config.GATEWAY_IP}:{config.PROMETHEUS_PORT}"


def registry_config() -> str:
    """distribution's configuration: plain HTTP on loopback (containerd pulls on the host),
    blobs in the cache so they outlive the cluster."""
    doc = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(config.registry_storage())},
            "delete": {"enabled": True},
        },
        "http": {"addr": config.registry_address()},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def corefile(kubeconfig: Path) -> str:
    """CoreDNS as the cluster's DNS: `<svc>.<ns>.svc.cluster.local` from the API, nothing
    forwarded (no name a pod looks up ever leaves the machine: others are REFUSED)."""
    return (
        f"{config.CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{\n"
        f"    bind {config.GATEWAY_IP}\n"
        "    errors\n"
        f"    ready 127.0.0.1:{config.COREDNS_READY_PORT}\n"
        f"    kubernetes {config.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        f"        kubeconfig {kubeconfig} kiln-dev\n"
        "        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n"
        "    }\n"
        "    cache 5\n"
        "    loadbalance\n"
        "}\n"
    )
