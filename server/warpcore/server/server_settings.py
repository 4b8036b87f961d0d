"""The server's settings, as parse_settings (settings.py) makes them from flags and environment variables."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from warpcore.server.core.bounds import MAX_MESSAGE_BYTES, MAX_TOKENS_LIMIT
from warpcore.server.core.limits import (
    API_MAX_MODELS,
    API_MAX_QUEUE,
    API_MAX_STREAMS,
    LOCAL_MAX_QUEUE,
    LOCAL_MAX_STREAMS,
    STALLED_READER_TIMEOUT,
)
from warpcore.server.tls import TlsFiles

DEFAULT_MODELS_PATH = Path.home() / ".cache" / "warpcore" / "models"


@dataclass(frozen=True)
class ServerSettings:
    listen: tuple[str, ...] = ("127.0.0.1:50051",)
    models_path: Path = DEFAULT_MODELS_PATH
    default_model: bool = True
    config: Path | None = None
    grace: float = 30.0
    stalled_reader_timeout: float | None = STALLED_READER_TIMEOUT
    token: str | None = field(default=None, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    http_port: int | None = None
    http_host: str = "127.0.0.1"
    max_streams_per_model: int = LOCAL_MAX_STREAMS
    max_queue_per_model: int = LOCAL_MAX_QUEUE
    max_streams_per_api_model: int = API_MAX_STREAMS
    max_queue_per_api_model: int = API_MAX_QUEUE
    max_api_models: int | None = API_MAX_MODELS
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_tokens_limit: int = MAX_TOKENS_LIMIT
    log_format: str = "text"
    api_overrides: str = "auto"
    allowed_api_hosts: frozenset[str] | None = None
    keep_alive: float = math.inf
    max_loaded_models: int | None = None
    max_loaded_bytes: int | None = None
    allow_pull: bool = False
    event_loop: str = "uvloop"
    variables: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    """The environment variables the settings were read from (set or not), whatever their flags said."""

    @property
    def tls(self) -> TlsFiles | None:
        """The TLS files, when TLS is on (a certificate and its key given)."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return TlsFiles(self.tls_cert, self.tls_key, self.tls_client_ca)
