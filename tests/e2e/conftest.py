"""The e2e tier runs against a real control plane.

By default the session starts the local dev cluster (`kiln dev up`) and removes it at the
end, failing if `down` leaves anything behind. With KILN_E2E_USE_KUBECONFIG=1 the same
tests run against the cluster in $KUBECONFIG (kind, EKS, ...) and leave it running;
KILN_PROMETHEUS_URL, KILN_S3_ENDPOINT and AWS_* then say where its Prometheus and S3 are.
KILN_E2E_KEEP=1 keeps the local cluster up after the run for inspection. The local
cluster gets two nodes (KILN_E2E_NODES), so spreading and drains are tested for real.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config
from tests.support.k8s import wait_for

from kilndev import hostnet, services
from kilndev.cluster import Cluster


@dataclass
class Kube:
    kubeconfig: Path
    local: bool  # the kiln dev cluster: pod IPs are reachable from this host
    kubectl_bin: str
    prometheus_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    api: client.ApiClient

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def rbac(self) -> client.RbacAuthorizationV1Api:
        return client.RbacAuthorizationV1Api(self.api)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            # What kubectl said, in the failure itself (CalledProcessError hides stderr).
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}"
            )
        return done


def _use_external() -> bool:
    return os.environ.get("KILN_E2E_USE_KUBECONFIG") == "1"


# `kiln dev` behaviour exists only for the local cluster; on another cluster it is not
# collected at all rather than skipped.
collect_ignore = ["test_devcluster.py"] if _use_external() else []


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    if _use_external():
        kubeconfig = Path(os.environ["KUBECONFIG"])
        api = config.new_client_from_config(config_file=str(kubeconfig))
        yield Kube(
            kubeconfig=kubeconfig,
            local=False,
            kubectl_bin=os.environ.get("KUBECTL", "kubectl"),
            prometheus_url=os.environ.get("KILN_PROMETHEUS_URL", ""),
            s3_endpoint=os.environ.get("KILN_S3_ENDPOINT", ""),
            s3_access_key=os.environ.get("AWS_ACCESS_KEY_ID", ""),
            s3_secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            api=api,
        )
        return

    cluster = Cluster(nodes=int(os.environ.get("KILN_E2E_NODES", "2")))
    cluster.up()
    creds = services.S3Credentials.load(cluster.paths.root / "s3.json")
    api = config.new_client_from_config(config_file=str(cluster.paths.admin_kubeconfig))
    yield Kube(
        kubeconfig=cluster.paths.admin_kubeconfig,
        local=True,
        kubectl_bin=str(cluster.bin_dir / "kubectl"),
        prometheus_url=services.prometheus_url(),
        s3_endpoint=services.s3_endpoint(),
        s3_access_key=creds.access_key,
        s3_secret_key=creds.secret_key,
        api=api,
    )
    api.close()
    if os.environ.get("KILN_E2E_KEEP") == "1":
        return
    cluster.down()  # raises when anything is left behind
    assert hostnet.leftovers() == []


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace enforcing Pod Security `restricted`, deleted afterwards."""
    name = f"e2e-{secrets.token_hex(3)}"
    kube.core.create_namespace(
        {
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "kiln.dev/e2e": "true",
                },
            }
        }
    )
    # Pods need the namespace's default ServiceAccount, which a controller creates.
    wait_for(
        lambda: kube.core.list_namespaced_service_account(name).items,
        30,
        f"default ServiceAccount in {name}",
    )
    yield name
    kube.core.delete_namespace(name)
