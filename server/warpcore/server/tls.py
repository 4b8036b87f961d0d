"""The server's TLS files, for every listener it opens: gRPC, the HTTP door and the metrics endpoint alike, so that
turning TLS on (and mTLS with a client CA) leaves no port in plaintext beside them."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    """The certificate chain, PEM."""
    key: Path
    """Its private key, PEM."""
    client_ca: Path | None = None
    """The CA whose certificates clients must present (mTLS); None: any client may connect."""

    def ssl_context(self) -> ssl.SSLContext:
        """A server context for the HTTP listeners, requiring a client certificate when there is a client CA."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca is not None:
            context.load_verify_locations(self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context
