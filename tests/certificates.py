"""A throwaway certificate authority with a server and a client certificate, for TLS and mTLS tests."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pems:
    ca: bytes
    server_certificate: bytes
    server_key: bytes
    client_certificate: bytes
    client_key: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_certificates() -> Pems:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())

    def issue(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        *,
        ca: bool = False,
        extensions: Sequence[x509.ExtensionType] = (),
    ) -> bytes:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(_name("warpcore test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    loopback = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    )
    return Pems(
        ca=issue("warpcore test CA", ca_key, ca=True),
        server_certificate=issue("warpcore server", server_key, extensions=[loopback]),
        server_key=_key_pem(server_key),
        client_certificate=issue("warpcore client", client_key),
        client_key=_key_pem(client_key),
    )


def encrypted(key_pem: bytes, *, traditional: bool = False) -> bytes:
    """`key_pem` protected by a passphrase, as `openssl pkey -aes256` writes it (PKCS#8: ENCRYPTED PRIVATE KEY) or
    `openssl rsa -aes256` in the traditional form (a Proc-Type: 4,ENCRYPTED header)."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    form = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.BestAvailableEncryption(b"passphrase"))
