"""A private key protected by a passphrase, refused by the server (--tls-key) and the SDK (client_key) alike: OpenSSL,
asked to read one, prompts for the passphrase at a terminal, holding the server's start or the client's
construction, and without a terminal fails with no word of why ("Invalid argument"). Neither ever asks. It sits
outside warpcore.client, as _api_settings does, so that the server reads it without importing grpc."""

from __future__ import annotations

import re

# PKCS#8's encrypted form (`openssl pkey -aes256`), and the traditional form's header (`openssl rsa -aes256`).
_ENCRYPTED = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type:[ \t]*4,[ \t]*ENCRYPTED", re.MULTILINE)
ENCRYPTED_KEY = "is encrypted (protected by a passphrase): give an unencrypted key, as nothing asks for a passphrase"
NO_PASSPHRASE = b""
"""The passphrase OpenSSL is given for a key in a form not told encrypted above: given one, it never prompts."""


def is_encrypted(pem: bytes) -> bool:
    """Whether PEM data holds a private key protected by a passphrase."""
    return _ENCRYPTED.search(pem) is not None
