"""The server's TLS files, for every listener it opens: gRPC, the HTTP door and the metrics endpoint alike, so that
turning TLS on (and mTLS with a client CA) leaves no port in plaintext beside them."""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from warpcore._private_keys import ENCRYPTED_KEY, NO_PASSPHRASE, is_encrypted


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    """The certificate chain, PEM."""
    key: Path
    """Its private key, PEM."""
    client_ca: Path | None = None
    """The CA whose certificates clients must present (mTLS); None: any client may connect."""

    def ssl_context(self) -> ssl.SSLContext:
        """A server context for the HTTP listeners, requiring a client certificate when there is a client CA.
        ValueError naming the file that cannot serve, as the start checks (gRPC would only say it cannot bind)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with contextlib.suppress(OSError):  # one that cannot be read is named below, as OpenSSL fails to read it
            if is_encrypted(self.key.read_bytes()):
                raise ValueError(f"--tls-key {self.key} {ENCRYPTED_KEY} (openssl pkey -in KEY -out PLAIN writes one)")
        try:
            context.load_cert_chain(self.cert, self.key, password=NO_PASSPHRASE)
        except (ssl.SSLError, OSError) as error:
            raise ValueError(
                f"--tls-cert {self.cert} and --tls-key {self.key} cannot serve TLS ({_why(error)}): give a PEM"
                " certificate chain and the PEM private key of its first certificate"
            ) from None
        if self.client_ca is not None:
            try:
                context.load_verify_locations(self.client_ca)
            except (ssl.SSLError, OSError) as error:
                raise ValueError(
                    f"--tls-client-ca {self.client_ca} is not PEM CA certificates ({_why(error)})"
                ) from None
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def _why(error: ssl.SSLError | OSError) -> str:
    """OpenSSL's reason (KEY_VALUES_MISMATCH: the key is not the certificate's), or the system's words."""
    return str(getattr(error, "reason", None) or error.strerror or error)
