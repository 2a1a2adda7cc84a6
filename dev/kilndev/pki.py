"""Certificates, keys and kubeconfigs for one local cluster.

One CA signs everything: serving certs (apiserver, each kubelet) and one client cert per
component, whose CN/O are the identities RBAC and the Node authorizer see. ECDSA P-256
keys keep generation fast (the whole set takes well under a second).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kilndev import config

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class CertSpec:
    """One certificate to issue: file stem, subject and what it may be used for."""

    name: str
    common_name: str
    organizations: Sequence[str] = ()
    server: bool = False
    client: bool = False
    dns_names: Sequence[str] = ()
    ips: Sequence[IPAddress] = field(default_factory=tuple)


def _loopback() -> IPAddress:
    return ipaddress.ip_address("127.0.0.1")


def cluster_certs() -> list[CertSpec]:
    """Every certificate the cluster's components and its user need."""
    gateway = config.GATEWAY_IP
    return [
        CertSpec(
            "apiserver",
            "kube-apiserver",
            server=True,
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                f"kubernetes.default.svc.{config.CLUSTER_DOMAIN}",
            ),
            ips=(_loopback(), config.KUBERNETES_SERVICE_IP, gateway),
        ),
        # The apiserver's identity when it calls a kubelet (kubectl logs, exec, port-forward).
        CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client", client=True),
        CertSpec("admin", "kiln-admin", ("system:masters",), client=True),
        CertSpec("controller-manager", "system:kube-controller-manager", client=True),
        CertSpec("scheduler", "system:kube-scheduler", client=True),
        CertSpec("kube-proxy", "system:kube-proxy", client=True),
        # Prometheus discovers pods through the API as this user (RBAC: read pods only).
        CertSpec("prometheus", "kiln:prometheus", client=True),
        # CoreDNS watches Services and EndpointSlices as this user.
        CertSpec("coredns", "kiln:coredns", client=True),
    ]


def node_certs(name: str, ip: IPAddress) -> list[CertSpec]:
    """A kubelet's client identity (the Node authorizer's `system:node:<name>`) and its
    serving certificate, whose IP SAN the apiserver checks when it calls the kubelet."""
    return [
        CertSpec(name, f"system:node:{name}", ("system:nodes",), client=True),
        CertSpec(f"{name}-serving", name, server=True, dns_names=(name,), ips=(ip,)),
    ]


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def _name(cn: str, orgs: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


class CertificateAuthority:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    @classmethod
    def load(cls, pki_dir: Path) -> CertificateAuthority:
        key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(key, x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes()))

    @classmethod
    def create(cls, common_name: str = "kiln-dev-ca") -> CertificateAuthority:
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        name = _name(common_name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY * 10)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(self, spec: CertSpec) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        usages = []
        if spec.server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if spec.client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(spec.common_name, spec.organizations))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns_names]
        sans += [x509.IPAddress(ip) for ip in spec.ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def write_pki(pki_dir: Path) -> None:
    """Create the CA, every component certificate and the service-account key pair."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create()
    _write(pki_dir / "ca.key", _key_pem(ca.key))
    _write(pki_dir / "ca.crt", ca.cert.public_bytes(serialization.Encoding.PEM), 0o644)
    for spec in cluster_certs():
        _issue_into(pki_dir, ca, spec)
    sa_key = _new_key()
    _write(pki_dir / "sa.key", _key_pem(sa_key))
    _write(
        pki_dir / "sa.pub",
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        0o644,
    )


def _issue_into(pki_dir: Path, ca: CertificateAuthority, spec: CertSpec) -> None:
    key, cert = ca.issue(spec)
    _write(pki_dir / f"{spec.name}.key", _key_pem(key))
    _write(pki_dir / f"{spec.name}.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def ensure_certs(pki_dir: Path, specs: Sequence[CertSpec]) -> None:
    """Issue, with the cluster's existing CA, those of `specs` not issued yet (a node added
    to a running cluster gets its identity without disturbing anyone else's)."""
    missing = [s for s in specs if not (pki_dir / f"{s.name}.crt").exists()]
    if missing:
        ca = CertificateAuthority.load(pki_dir)
        for spec in missing:
            _issue_into(pki_dir, ca, spec)


def kubeconfig(server: str, pki_dir: Path, cert_name: str, user: str, context: str) -> str:
    """A kubeconfig that authenticates with the client certificate `<cert_name>.crt`."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {
                    "server": server,
                    "certificate-authority": str(pki_dir / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki_dir / f"{cert_name}.crt"),
                    "client-key": str(pki_dir / f"{cert_name}.key"),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
        "current-context": context,
    }
    return yaml.safe_dump(doc, sort_keys=False)
