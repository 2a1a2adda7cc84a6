from __future__ import annotations

from pathlib import Path

import pytest

from kilndev import config

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def _required(go_mod: Path, module: str) -> str:
    for line in go_mod.read_text().splitlines():
        parts = line.split()
        if parts[:1] == [module] or parts[:2] == ["require", module]:
            return parts[-1]
    raise AssertionError(f"{module} not required in {go_mod}")


def test_pinned_versions_match_the_tools_modules() -> None:
    # The cluster looks for binaries in a directory named after these versions.
    assert _required(ROOT / "tools/k8s/go.mod", "k8s.io/kubernetes") == f"v{config.K8S_VERSION}"
    assert (
        _required(ROOT / "tools/prometheus/go.mod", "github.com/prometheus/prometheus")
        == config.PROMETHEUS_MODULE_VERSION
    )


def test_staging_modules_are_pinned_to_the_matching_release() -> None:
    minor = config.K8S_VERSION.split(".", 1)[1]
    text = (ROOT / "tools/k8s/go.mod").read_text()
    replaces = [line.split() for line in text.splitlines() if "=> k8s.io/" in line]
    assert len(replaces) > 20
    assert all(parts[-1] == f"v0.{minor}" for parts in replaces)


def test_cluster_addresses_do_not_overlap() -> None:
    assert not config.POD_NETWORK.overlaps(config.SERVICE_CIDR)
    assert config.GATEWAY_IP in config.POD_NETWORK
    assert config.KUBERNETES_SERVICE_IP in config.SERVICE_CIDR
    assert config.DNS_SERVICE_IP in config.SERVICE_CIDR


def test_go_install_versions_match_the_build_script() -> None:
    # build-tools.sh installs into <set>-<version>/bin; the cluster looks there.
    script = (ROOT / "scripts/build-tools.sh").read_text()
    assert f"containerd_version={config.CONTAINERD_VERSION}" in script
    assert f"registry_version={config.REGISTRY_VERSION}" in script
    assert f"coredns_version={config.COREDNS_VERSION}" in script
