from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kilndev import services

pytestmark = pytest.mark.unit


def test_prometheus_discovers_annotated_running_pods_through_the_api() -> None:
    doc = yaml.safe_load(services.prometheus_config(Path("/pki"), "https://127.0.0.1:6443"))
    job = next(j for j in doc["scrape_configs"] if j["job_name"] == "kubernetes-pods")
    sd = job["kubernetes_sd_configs"][0]
    assert sd["role"] == "pod"
    assert sd["api_server"] == "https://127.0.0.1:6443"
    assert sd["tls_config"]["cert_file"] == "/pki/prometheus.crt"
    keeps = [r for r in job["relabel_configs"] if r["action"] == "keep"]
    assert {tuple(r["source_labels"]) for r in keeps} == {
        ("__meta_kubernetes_pod_annotation_prometheus_io_scrape",),
        ("__meta_kubernetes_pod_phase",),
    }
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"namespace", "pod", "__address__", "__metrics_path__"} <= targets


def test_s3_config_requires_the_generated_credentials(tmp_path: Path) -> None:
    creds = services.S3Credentials.generate()
    assert creds != services.S3Credentials.generate()
    path = tmp_path / "s3.json"
    path.write_text(services.seaweedfs_s3_config(creds))
    assert services.S3Credentials.load(path) == creds
    identities = json.loads(path.read_text())["identities"]
    assert len(identities) == 1  # no anonymous identity


def test_registry_serves_on_loopback_from_the_cache() -> None:
    doc = yaml.safe_load(services.registry_config())
    assert doc["http"]["addr"].startswith("127.0.0.1:")
    assert doc["storage"]["filesystem"]["rootdirectory"].endswith("registry")


def test_coredns_serves_the_cluster_domain_and_forwards_nothing() -> None:
    text = services.corefile(Path("/k/coredns.kubeconfig"))
    assert "kubernetes cluster.local" in text
    assert "kubeconfig /k/coredns.kubeconfig" in text
    assert "forward" not in text  # names outside the cluster are refused, never sent out


def test_a_pods_own_namespace_label_wins_over_the_targets() -> None:
    # The operator's series describe objects in other namespaces; dashboards filter on it.
    doc = yaml.safe_load(services.prometheus_config(Path("/pki"), "https://127.0.0.1:6443"))
    job = next(j for j in doc["scrape_configs"] if j["job_name"] == "kubernetes-pods")
    assert job["honor_labels"] is True
