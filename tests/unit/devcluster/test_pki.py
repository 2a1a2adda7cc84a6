from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kilndev import config, pki

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.write_pki(d)
    return d


def _cert(d: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((d / f"{name}.crt").read_bytes())


def test_every_certificate_is_signed_by_the_cluster_ca(pki_dir: Path) -> None:
    ca = _cert(pki_dir, "ca")
    for spec in pki.cluster_certs():
        cert = _cert(pki_dir, spec.name)
        cert.verify_directly_issued_by(ca)


def test_apiserver_serves_every_name_pods_and_users_use(pki_dir: Path) -> None:
    san = _cert(pki_dir, "apiserver").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "kubernetes.default.svc" in san.value.get_values_for_type(x509.DNSName)
    ips = san.value.get_values_for_type(x509.IPAddress)
    assert config.KUBERNETES_SERVICE_IP in ips  # in-cluster clients via the Service
    assert ipaddress.ip_address("127.0.0.1") in ips  # the user's kubeconfig
    assert config.GATEWAY_IP in ips  # the Service's endpoint (advertise address)


def test_a_kubelet_identity_is_what_the_node_authorizer_expects(pki_dir: Path) -> None:
    node_ip = ipaddress.ip_address("10.244.0.2")
    pki.ensure_certs(pki_dir, pki.node_certs("kiln-node-2", node_ip))
    ca = _cert(pki_dir, "ca")
    client_cert, serving = _cert(pki_dir, "kiln-node-2"), _cert(pki_dir, "kiln-node-2-serving")
    client_cert.verify_directly_issued_by(ca)
    serving.verify_directly_issued_by(ca)
    subject = client_cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:kiln-node-2"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    # The apiserver verifies the kubelet's serving certificate against the node's InternalIP.
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.IPAddress) == [node_ip]


def test_issuing_a_node_certificate_again_keeps_the_first(pki_dir: Path) -> None:
    ip = ipaddress.ip_address("10.244.0.3")
    pki.ensure_certs(pki_dir, pki.node_certs("kiln-node-3", ip))
    first = (pki_dir / "kiln-node-3.crt").read_bytes()
    pki.ensure_certs(pki_dir, pki.node_certs("kiln-node-3", ip))
    assert (pki_dir / "kiln-node-3.crt").read_bytes() == first


def test_client_and_server_usages_are_separate(pki_dir: Path) -> None:
    def usages(name: str) -> list[x509.ObjectIdentifier]:
        ext = _cert(pki_dir, name).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        return list(ext.value)

    assert usages("admin") == [ExtendedKeyUsageOID.CLIENT_AUTH]
    pki.ensure_certs(pki_dir, pki.node_certs("kiln-node", config.GATEWAY_IP))
    assert usages("kiln-node-serving") == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_keys_are_private_and_sa_key_pair_matches(pki_dir: Path) -> None:
    assert (pki_dir / "ca.key").stat().st_mode & 0o077 == 0
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key((pki_dir / "sa.key").read_bytes(), None)
    public = serialization.load_pem_public_key((pki_dir / "sa.pub").read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]


def test_kubeconfig_points_at_the_component_certificate(pki_dir: Path) -> None:
    doc = yaml.safe_load(pki.kubeconfig("https://127.0.0.1:6443", pki_dir, "scheduler", "s", "c"))
    user = doc["users"][0]["user"]
    assert user["client-certificate"] == str(pki_dir / "scheduler.crt")
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert doc["current-context"] == "c"
