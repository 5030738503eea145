"""PKI for the local control plane.

Why this exists: kube-apiserver needs a serving certificate and a client CA,
ServiceAccount tokens need a signing key pair, and the operator under test
should talk to the API exactly as in a real cluster (TLS + client-certificate
authentication, RBAC enforced), so nothing here relies on insecure ports.

Everything is written as PEM files into one directory and generated only once:
if every file already exists it is reused, so kubeconfigs handed out earlier
stay valid across ``down``/``up`` cycles. If any file is missing the whole set
is regenerated, because leaf certificates are only meaningful with their CA.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

APISERVER_DNS_NAMES: tuple[str, ...] = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
NODE_NAME = "schedexec-node"
"""The real node's name (node.py); its kubelet authenticates as ``system:node:<NODE_NAME>``."""
NODE_IP = "10.244.0.1"
"""The real node's address: the pod bridge's gateway, where the API server and the kubelet listen."""
APISERVER_IP_ADDRESSES: tuple[str, ...] = ("127.0.0.1", "10.0.0.1", NODE_IP)
ADMIN_USER = "admin"
ADMIN_GROUP = "system:masters"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"

_CA_VALIDITY = datetime.timedelta(days=3650)
_LEAF_VALIDITY = datetime.timedelta(days=1825)
_CLOCK_SKEW = datetime.timedelta(hours=1)

_SigningKey = ec.EllipticCurvePrivateKey


@dataclasses.dataclass(frozen=True)
class CertPaths:
    """Locations of the PEM files making up the control plane's PKI."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def kubelet_cert(self) -> Path:
        """The kubelet's client certificate (``system:node:<NODE_NAME>``) for the API server."""
        return self.directory / "kubelet.crt"

    @property
    def kubelet_key(self) -> Path:
        return self.directory / "kubelet.key"

    @property
    def kubelet_serving_cert(self) -> Path:
        """The kubelet's serving certificate (logs, exec), for ``NODE_IP`` and ``NODE_NAME``."""
        return self.directory / "kubelet-serving.crt"

    @property
    def kubelet_serving_key(self) -> Path:
        return self.directory / "kubelet-serving.key"

    @property
    def apiserver_kubelet_client_cert(self) -> Path:
        """The API server's client certificate towards kubelets (``kubectl logs``/``exec``)."""
        return self.directory / "apiserver-kubelet-client.crt"

    @property
    def apiserver_kubelet_client_key(self) -> Path:
        return self.directory / "apiserver-kubelet-client.key"

    @property
    def registry_cert(self) -> Path:
        """The node's image registry's serving certificate (registry.py), for ``NODE_IP``."""
        return self.directory / "registry.crt"

    @property
    def registry_key(self) -> Path:
        return self.directory / "registry.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    def all(self) -> tuple[Path, ...]:
        return (
            self.ca_cert,
            self.ca_key,
            self.apiserver_cert,
            self.apiserver_key,
            self.admin_cert,
            self.admin_key,
            self.kubelet_cert,
            self.kubelet_key,
            self.kubelet_serving_cert,
            self.kubelet_serving_key,
            self.apiserver_kubelet_client_cert,
            self.apiserver_kubelet_client_key,
            self.registry_cert,
            self.registry_key,
            self.sa_key,
            self.sa_pub,
        )


def _new_key() -> _SigningKey:
    # ECDSA P-256: fast to generate and accepted by Go, OpenSSL and kubectl.
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: _SigningKey, validity: datetime.timedelta
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + validity)
    )


def _make_ca() -> tuple[x509.Certificate, _SigningKey]:
    key = _new_key()
    name = _name("schedexec-devcluster-ca")
    cert = (
        _builder(name, name, key, _CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    ca_cert: x509.Certificate,
    ca_key: _SigningKey,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    san: Sequence[x509.GeneralName] = (),
) -> tuple[x509.Certificate, _SigningKey]:
    key = _new_key()
    builder = (
        _builder(subject, ca_cert.subject, key, _LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def apiserver_sans() -> list[x509.GeneralName]:
    """Subject alternative names of the kube-apiserver serving certificate."""
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in APISERVER_DNS_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in APISERVER_IP_ADDRESSES]
    return names


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: _SigningKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _generate(paths: CertPaths) -> dict[Path, bytes]:
    """All PEM file contents, keyed by destination path."""
    ca_cert, ca_key = _make_ca()
    serving_cert, serving_key = _make_leaf(
        ca_cert, ca_key, _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, apiserver_sans()
    )
    admin_cert, admin_key = _make_leaf(ca_cert, ca_key, _name(ADMIN_USER, ADMIN_GROUP), ExtendedKeyUsageOID.CLIENT_AUTH)
    client = ExtendedKeyUsageOID.CLIENT_AUTH
    kubelet_cert, kubelet_key = _make_leaf(ca_cert, ca_key, _name(f"system:node:{NODE_NAME}", "system:nodes"), client)
    kubelet_sans = [x509.DNSName(NODE_NAME), x509.IPAddress(ipaddress.ip_address(NODE_IP))]
    kubelet_serving_cert, kubelet_serving_key = _make_leaf(
        ca_cert,
        ca_key,
        _name(f"system:node:{NODE_NAME}", "system:nodes"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        kubelet_sans,
    )
    # system:masters: the API server may reach every kubelet API (logs, exec, port-forward) on this local node
    kubelet_client_cert, kubelet_client_key = _make_leaf(
        ca_cert, ca_key, _name(KUBELET_CLIENT_USER, ADMIN_GROUP), client
    )
    registry_cert, registry_key = _make_leaf(
        ca_cert, ca_key, _name("schedexec-registry"), ExtendedKeyUsageOID.SERVER_AUTH, kubelet_sans[1:]
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_pub = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        paths.ca_cert: _cert_pem(ca_cert),
        paths.ca_key: _key_pem(ca_key),
        paths.apiserver_cert: _cert_pem(serving_cert),
        paths.apiserver_key: _key_pem(serving_key),
        paths.admin_cert: _cert_pem(admin_cert),
        paths.admin_key: _key_pem(admin_key),
        paths.kubelet_cert: _cert_pem(kubelet_cert),
        paths.kubelet_key: _key_pem(kubelet_key),
        paths.kubelet_serving_cert: _cert_pem(kubelet_serving_cert),
        paths.kubelet_serving_key: _key_pem(kubelet_serving_key),
        paths.apiserver_kubelet_client_cert: _cert_pem(kubelet_client_cert),
        paths.apiserver_kubelet_client_key: _key_pem(kubelet_client_key),
        paths.registry_cert: _cert_pem(registry_cert),
        paths.registry_key: _key_pem(registry_key),
        paths.sa_key: _key_pem(sa_key),
        paths.sa_pub: sa_pub,
    }


def ensure_certs(directory: Path) -> CertPaths:
    """Create the PKI in ``directory`` unless all files already exist.

    Files are written to a sibling temp dir first and renamed into place, so
    an interrupted run never leaves a half-written set behind.
    """
    paths = CertPaths(directory)
    if all(p.is_file() for p in paths.all()):
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".certs-", dir=directory))
    try:
        for destination, content in _generate(paths).items():
            staged = staging / destination.name
            staged.write_bytes(content)
            staged.chmod(0o600 if destination.suffix == ".key" else 0o644)
        for destination in paths.all():
            os.replace(staging / destination.name, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return paths
